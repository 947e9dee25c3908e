/** The signal every handler works under: a client that goes away before its answer aborts it; an answered request does not. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request } from 'node:http'
import { test } from 'node:test'
import { SandstormError, type CallOptions } from '../shared/index.js'
import { startTestServer } from './test-server.fixture.js'

test("a client gone before its answer aborts the handler's signal; one that was answered leaves it alone", async () => {
  const t = await startTestServer()
  // The agent's listing of processes is held until its call's signal fires, or let go.
  const signals: AbortSignal[] = []
  let letGo = (): void => undefined
  try {
    const id = (await t.request('POST', '/v1/sandboxes', { body: {} })).json.id as string
    t.agent.processes = async (_id: string, options: CallOptions = {}) => {
      signals.push(options.signal!)
      await new Promise<void>((resolve) => {
        letGo = resolve
        options.signal!.addEventListener('abort', () => resolve(), { once: true })
      })
      return []
    }
    const url = new URL(`/v1/sandboxes/${id}/processes`, t.server.url)
    const gone = request({ host: url.hostname, port: url.port, path: url.pathname, headers: { authorization: `Bearer ${t.server.apiKey}` }, agent: false })
    gone.on('error', () => undefined)
    gone.end()
    while (signals.length === 0) await new Promise((r) => setTimeout(r, 5))
    gone.destroy()
    if (!signals[0]!.aborted) {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("the handler's signal was not aborted 5 s after its client went away")), 5000)))
      await Promise.race([once(signals[0]!, 'abort'), late]).finally(() => clearTimeout(timer))
    }
    assert.ok(signals[0]!.reason instanceof SandstormError)
    assert.equal((signals[0]!.reason as SandstormError).code, 'canceled')

    const answering = t.request('GET', `/v1/sandboxes/${id}/processes`)
    while (signals.length === 1) await new Promise((r) => setTimeout(r, 5))
    letGo()
    assert.equal((await answering).status, 200)
    // The response's close comes after its last byte: a finished answer aborts nothing.
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(signals[1]!.aborted, false)
  } finally {
    letGo()
    await t.close()
  }
})
