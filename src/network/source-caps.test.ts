import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { until } from '../../test/helpers/until.js'
import { capPerSource } from './source-caps.js'

describe('capPerSource', () => {
  it("closes a source's connections past its share, takes another source's, and gives a share back on close", async () => {
    const server = createServer((s) => s.on('error', () => undefined))
    capPerSource(server, 3)
    // Heard after the cap's own listener: whether it closed the connection, by the client's port.
    const capped = new Map<number, boolean>()
    server.on('connection', (s: Socket) => capped.set(s.remotePort!, s.destroyed))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    const held: Socket[] = []
    const open = async (from = '127.0.0.1'): Promise<boolean> => {
      const socket = connect({ port, host: '127.0.0.1', localAddress: from })
      socket.on('error', () => undefined)
      held.push(socket)
      await once(socket, 'connect')
      await until('the server to take the connection', async () => capped.has(socket.localPort!))
      return capped.get(socket.localPort!)!
    }
    try {
      for (let i = 0; i < 3; i++) assert.equal(await open(), false, `connection ${i + 1} of 3 was closed`)
      assert.equal(await open(), true, 'a fourth connection of the same source was taken')
      assert.equal(await open('127.0.0.2'), false, "another source's connection was closed")
      held[0]!.destroy()
      await until('the closed connection to give its share back', async () => !(await open()))
    } finally {
      for (const s of held) s.destroy()
      server.close()
    }
  })

  it("ends every connection of one source on closeFrom, and no other source's", async () => {
    const server = createServer((s) => s.on('error', () => undefined))
    const sources = capPerSource(server, 8)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    const dial = async (from: string): Promise<Socket> => {
      const socket = connect({ port, host: '127.0.0.1', localAddress: from })
      socket.on('error', () => undefined)
      await once(socket, 'connect')
      return socket
    }
    const gone = await Promise.all([dial('127.0.0.1'), dial('127.0.0.1')])
    const kept = await dial('127.0.0.2')
    try {
      await until('the server to hold all three', async () => (await new Promise<number>((r) => server.getConnections((_e, n) => r(n)))) === 3)
      sources.closeFrom('127.0.0.1')
      await Promise.all(gone.map((s) => once(s, 'close')))
      kept.write('still here')
      assert.equal(kept.destroyed, false)
      assert.equal(await new Promise<number>((r) => server.getConnections((_e, n) => r(n))), 1)
    } finally {
      for (const s of [...gone, kept]) s.destroy()
      server.close()
    }
  })
})
