import assert from 'node:assert/strict'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import WebSocket from 'ws'
import { ptyKeyProtocol, ptyProtocol } from '../shared/index.js'
import { startTestServer } from './test-server.fixture.js'

describe("a terminal's input", () => {
  it('stops reading a client whose input waits on the agent, resizes counted: tiny messages no longer queue without end', async () => {
    const t = await startTestServer()
    try {
      const created = await t.request('POST', '/v1/sandboxes', { body: { template: 'debian' } })
      assert.equal(created.status, 201)
      const id = created.json.id as string
      // The sandbox stops taking input (its pipe full): nothing queued behind the first byte goes on.
      let release!: () => void
      const released = new Promise<void>((resolve) => (release = resolve))
      t.agent.writeStdin = () => released
      const ws = new WebSocket(`${t.server.url.replace(/^http/, 'ws')}/v1/sandboxes/${id}/pty?cols=80&rows=24&cmd=cat`, [ptyProtocol, ptyKeyProtocol(t.server.apiKey)])
      await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
      ws.send(Buffer.of(120))
      const resize = JSON.stringify({ type: 'resize', cols: 100, rows: 30 })
      for (let i = 0; i < 5000; i++) ws.send(resize)
      // Behind them a bad message, which the server answers at once when it reads it. 5000 resizes
      // fit in the socket's buffers: a server that reads on reaches it; one that paused never does.
      ws.send('not json')
      const answered = await new Promise<string>((resolve) => {
        ws.on('message', (data, isBinary) => {
          if (!isBinary && String(data).includes('expected JSON')) resolve('answered')
        })
        setTimeout(() => resolve('not read'), 3000)
      })
      assert.equal(answered, 'not read', 'the server read on past 5000 queued resizes')
      // Once the input goes on, the server reads on, and answers the bad message: it was paused, not gone.
      const later = new Promise<void>((resolve) => ws.on('message', (data, isBinary) => !isBinary && String(data).includes('expected JSON') && resolve()))
      release()
      assert.equal(await Promise.race([later.then(() => 'answered'), new Promise((r) => setTimeout(r, 10_000, 'still not read').unref())]), 'answered')
      ws.terminate()
    } finally {
      await t.close()
    }
  })

  it('tells the client of input the agent failed to take only what it may see: an internal error is logged, not sent', async () => {
    const t = await startTestServer()
    try {
      const id = (await t.request('POST', '/v1/sandboxes', { body: { template: 'debian' } })).json.id as string
      t.agent.writeStdin = async () => {
        throw Object.assign(new Error(`EIO: write /var/lib/sandstorm/sandboxes/${id}/pty`), { code: 'EIO' })
      }
      const ws = new WebSocket(`${t.server.url.replace(/^http/, 'ws')}/v1/sandboxes/${id}/pty?cols=80&rows=24&cmd=cat`, [ptyProtocol, ptyKeyProtocol(t.server.apiKey)])
      const error = new Promise<{ code: string; message: string }>((resolve) => {
        ws.on('message', (data, isBinary) => {
          const message = isBinary ? undefined : (JSON.parse(String(data)) as { type: string; code: string; message: string })
          if (message?.type === 'error') resolve(message)
        })
      })
      await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
      ws.send(Buffer.of(120))
      const answer = await error
      assert.equal(answer.code, 'internal')
      assert.equal(answer.message, 'the terminal failed; the server logged why')
      const logged = await t.logs.waitFor((r) => r.sandboxId === id && /EIO/.test(String(r.msg)))
      assert.equal(logged.code, 'internal')
      ws.terminate()
    } finally {
      await t.close()
    }
  })

  it('closes (1008) a client that sends bad messages and reads none of the answers, instead of queueing answers without end', async () => {
    const t = await startTestServer()
    try {
      const id = (await t.request('POST', '/v1/sandboxes', { body: { template: 'debian' } })).json.id as string
      let processed!: () => void
      const allRead = new Promise<void>((resolve) => (processed = resolve))
      t.agent.resizePty = async () => processed()
      const socket = connect(Number(new URL(t.server.url).port), '127.0.0.1')
      socket.on('error', () => undefined)
      await once(socket, 'connect')
      socket.write(
        `GET /v1/sandboxes/${id}/pty?cols=80&rows=24&cmd=cat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.server.apiKey}\r\n` +
          `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: ${ptyProtocol}\r\n\r\n`,
      )
      const frames = serverFrames(socket)
      assert.match((await frames.head).split('\r\n')[0]!, /^HTTP\/1\.1 101 /)
      // Stop reading: what the server sends piles up in the kernel's buffers, then in its own.
      socket.pause()
      // Enough bad messages for their answers to fill both sockets' kernel buffers at their largest, and 2 MiB more.
      // 6 MiB where the kernel does not say (its default largest buffer on most hosts is 4 to 6 MiB).
      const kernelMax = (file: string): number => (existsSync(file) ? Number(readFileSync(file, 'utf8').trim().split(/\s+/)[2]) : 6 << 20)
      const answerBytes = 600 // at least: 80 control characters escaped twice, and the message around them
      const count = Math.ceil((kernelMax('/proc/sys/net/ipv4/tcp_rmem') + kernelMax('/proc/sys/net/ipv4/tcp_wmem') + (2 << 20)) / answerBytes)
      const bad = maskedTextFrame('\u0001'.repeat(80))
      for (let sent = 0; sent < count; sent += 1000) {
        if (!socket.write(Buffer.concat(Array.from({ length: Math.min(1000, count - sent) }, () => bad)))) await once(socket, 'drain')
      }
      // A resize after them: once the agent has it, the server has read every bad message before it.
      socket.write(maskedTextFrame(JSON.stringify({ type: 'resize', cols: 100, rows: 30 })))
      await allRead
      socket.resume()
      const end = await frames.until((f) => f.opcode === 8, count)
      socket.destroy()
      assert.equal(end.closeCode, 1008, `the server answered all ${end.answers} bad messages and stayed open`)
      assert.ok(end.answers < count)
    } finally {
      await t.close()
    }
  })
})

/** A masked (client) WebSocket text frame; the mask is zero, so the payload goes as it is. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text)
  assert.ok(payload.length < 126)
  return Buffer.concat([Buffer.of(0x81, 0x80 | payload.length, 0, 0, 0, 0), payload])
}

/** Reads a server's handshake head, then its frames: `until` counts the text frames up to one that matches, or to `most` of them. */
function serverFrames(socket: Socket): {
  head: Promise<string>
  until(match: (f: { opcode: number }) => boolean, most: number): Promise<{ answers: number; closeCode?: number }>
} {
  let buffered: Buffer = Buffer.alloc(0)
  let gotHead!: (head: string) => void
  const head = new Promise<string>((resolve) => (gotHead = resolve))
  let headDone = false
  let answers = 0
  let waiter: { match: (f: { opcode: number }) => boolean; most: number; resolve: (r: { answers: number; closeCode?: number }) => void } | undefined
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    if (!headDone) {
      const at = buffered.indexOf('\r\n\r\n')
      if (at < 0) return
      headDone = true
      gotHead(buffered.subarray(0, at).toString('latin1'))
      buffered = buffered.subarray(at + 4)
    }
    let at = 0
    while (buffered.length - at >= 2) {
      const opcode = buffered[at]! & 0x0f
      let length = buffered[at + 1]! & 0x7f
      let start = at + 2
      if (length === 126) {
        if (buffered.length - at < 4) break
        length = buffered.readUInt16BE(at + 2)
        start = at + 4
      } else if (length === 127) {
        if (buffered.length - at < 10) break
        length = Number(buffered.readBigUInt64BE(at + 2))
        start = at + 10
      }
      if (buffered.length < start + length) break
      const payload = buffered.subarray(start, start + length)
      at = start + length
      if (opcode === 1) answers++
      if (waiter && (waiter.match({ opcode }) || answers >= waiter.most)) {
        waiter.resolve({ answers, ...(opcode === 8 ? { closeCode: payload.readUInt16BE(0) } : {}) })
        waiter = undefined
      }
    }
    buffered = buffered.subarray(at)
  })
  return { head, until: (match, most) => new Promise((resolve) => (waiter = { match, most, resolve })) }
}
