import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Hono } from 'hono'
import { z } from 'zod'
import { silentLogger } from '../shared/index.js'
import { maxJsonBytes } from './body-limits.js'
import type { ServerEnv } from './context.js'
import { errorResponse } from './http-errors.js'
import { bodyOf } from './request-input.js'

describe('bodyOf', () => {
  it('reads at most the JSON limit of a body, with no body limit before it, and answers 413', async () => {
    const app = new Hono<ServerEnv>()
    app.post('/', async (c) => c.json(await bodyOf(c, z.object({}).passthrough())))
    app.onError((err) => errorResponse(err, silentLogger()))
    const chunk = new Uint8Array(64 * 1024).fill(0x20)
    let pulledBytes = 0
    // 12 MiB, in chunks as a client sends them: a reader without its own bound takes them all.
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulledBytes >= 12 * 1024 * 1024) return controller.close()
        pulledBytes += chunk.byteLength
        controller.enqueue(chunk)
      },
    })
    const res = await app.request('/', { method: 'POST', body, headers: { 'content-type': 'application/json' }, duplex: 'half' } as RequestInit)
    assert.equal(res.status, 413)
    assert.match(((await res.json()) as { message: string }).message, /expected at most 8388608 bytes of JSON/)
    assert.ok(pulledBytes <= maxJsonBytes + 4 * chunk.byteLength, `${pulledBytes} bytes read`)
  })

  it('parses a body under the limit, and an empty one as {}', async () => {
    const app = new Hono<ServerEnv>()
    app.post('/', async (c) => c.json(await bodyOf(c, z.object({ a: z.number().optional() }))))
    assert.deepEqual(await (await app.request('/', { method: 'POST', body: '\ufeff{"a": 1}' })).json(), { a: 1 })
    assert.deepEqual(await (await app.request('/', { method: 'POST' })).json(), {})
  })
})
