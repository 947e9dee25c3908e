import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { silentLogger } from '../shared/index.js'
import { closedByServer, openConnections } from '../../test/helpers/connections.js'
import { startNameChecks } from './name-checks.js'

describe('the HTTP name check', () => {
  it('outlives a sandbox that resets an upgrade it refused, however often', async () => {
    const checks = await startNameChecks({
      host: '127.0.0.1',
      clientOf: () => ({ allowsName: (name) => name === 'allowed.test', addressesOf: async () => [] }),
      logger: silentLogger(),
    })
    try {
      for (let i = 0; i < 20; i++) {
        const socket = connect(checks.httpPort, '127.0.0.1')
        socket.on('error', () => undefined)
        await once(socket, 'connect')
        // Refused (the name is not allowed), and reset by the client while the refusal is written.
        socket.write('GET / HTTP/1.1\r\nHost: refused.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
        await new Promise((r) => setImmediate(r))
        socket.resetAndDestroy()
      }
      // Still listening and answering: a refusal of a plain request.
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(checks.httpPort, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: refused.test\r\nConnection: close\r\n\r\n'))
        let text = ''
        socket.on('data', (c: Buffer) => (text += c.toString()))
        socket.on('end', () => resolve(text))
        socket.on('error', reject)
      })
      assert.match(answer, /^HTTP\/1\.1 403 /)
    } finally {
      await checks.close()
    }
  })
})

describe('the TLS name check', () => {
  it("holds a sandbox to 128 connections waiting on their hello, and cuts a hello that is not whole in time", async () => {
    const checks = await startNameChecks({ host: '127.0.0.1', clientOf: () => ({ allowsName: () => true, addressesOf: async () => [] }), logger: silentLogger() })
    const held: Socket[] = []
    try {
      await openConnections(checks.tlsPort, 128, held)
      assert.equal(await closedByServer(checks.tlsPort, held), true, 'a 129th connection of one sandbox stayed open')
      // A hello a byte every 4 s is never idle for the 10 s idle timeout, but is cut at the hello's deadline.
      const slow = held[0]!
      const cut = new Promise<boolean>((resolve) => {
        slow.once('close', () => resolve(true))
        setTimeout(() => resolve(false), 20_000).unref()
      })
      const drip = setInterval(() => slow.write(Buffer.from([0x16])), 4000)
      try {
        assert.equal(await cut, true, 'a hello dripping a byte at a time held its connection past the deadline')
      } finally {
        clearInterval(drip)
      }
    } finally {
      for (const s of held) s.destroy()
      await checks.close()
    }
  })
})
