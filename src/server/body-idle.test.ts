import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createBodyIdleWatch } from './body-idle.js'

describe('the body idle watch', () => {
  const watch = createBodyIdleWatch({ idleMs: 300, checkMs: 50 })
  let server: Server
  let port: number
  before(async () => {
    server = createServer({ requestTimeout: 0 }, (req, res) => {
      watch.watch(req)
      let n = 0
      req.on('data', (c: Buffer) => (n += c.length))
      req.on('end', () => res.end(`got ${n}`))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })
  after(async () => {
    watch.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  const upload = (size: number): Socket => {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => undefined)
    socket.write(`PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`)
    return socket
  }

  it('cuts a body from which nothing more arrives', async () => {
    const socket = upload(1000)
    socket.write('x'.repeat(10))
    let answer = ''
    socket.on('data', (c: Buffer) => (answer += c.toString()))
    const cut = await Promise.race([once(socket, 'close').then(() => true), new Promise<false>((r) => setTimeout(r, 10_000, false).unref())])
    assert.ok(cut, 'the connection is cut')
    assert.equal(answer, '', 'no answer: the connection was cut')
  })

  it('lets a slow body that keeps coming arrive whole, for longer than the idle time', async () => {
    const socket = upload(10)
    let answer = ''
    socket.on('data', (c: Buffer) => (answer += c.toString()))
    // A byte every 100 ms for a second: three times the idle time in all, never idle for it.
    for (let i = 0; i < 10; i++) {
      socket.write('x')
      await new Promise((r) => setTimeout(r, 100))
    }
    while (!answer.includes('got 10')) await once(socket, 'data')
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n[\s\S]*got 10$/)
    socket.destroy()
  })
})
