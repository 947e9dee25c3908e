import assert from 'node:assert/strict'
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
})
