import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { describe, it } from 'node:test'
import { silentLogger } from '../shared/index.js'
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
