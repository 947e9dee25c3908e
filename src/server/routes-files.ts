import type { Hono } from 'hono'
import { mkdirBody, pathQuery, removeBody, renameBody, SandstormError } from '../shared/index.js'
import type { RouteDeps, ServerEnv } from './context.js'
import { errorResponse } from './http-errors.js'
import { bodyOf, queryOf } from './request-input.js'
import { requestBody } from './request-body.js'
import { peek, responseStream, rest, streamSignal } from './streams.js'

/** Read and write whole files (streamed), and the fs/* operations. */
export function fileRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  const { agent, sandboxes, logger, maxFileBytes } = deps
  const tooLarge = (got: string): SandstormError =>
    new SandstormError('payload_too_large', `file too large: expected at most ${maxFileBytes} bytes, got ${got}`)
  // The rest of a refused body is read and dropped (request-body.ts): the connection goes on.
  const refuse = (got: string): Response => errorResponse(tooLarge(got), logger)

  app.get('/v1/sandboxes/:id/files', async (c) => {
    const id = c.req.param('id')
    const { path } = queryOf(c, pathQuery)
    sandboxes.requireStarted(id)
    const { stop, signal } = streamSignal(c.var.signal)
    // A missing file or a directory fails on the first chunk: read it before the status is sent.
    const peeked = await peek(agent.readFile(id, path, { signal }))
    const body = responseStream(rest(peeked), { stop, signal, logger, context: { sandboxId: id, path } })
    return new Response(body, { status: 200, headers: { 'content-type': 'application/octet-stream' } })
  })

  app.put('/v1/sandboxes/:id/files', async (c) => {
    const id = c.req.param('id')
    const { path } = queryOf(c, pathQuery)
    const declared = c.req.header('content-length')
    if (declared !== undefined && Number(declared) > maxFileBytes) return refuse(`${declared} (Content-Length)`)
    sandboxes.requireStarted(id)
    const source = requestBody(c)
    let receivedBytes = 0
    let overLimit = false
    // Counted as it streams: a body without Content-Length (chunked) is cut off at the limit.
    async function* counted(): AsyncGenerator<Uint8Array> {
      if (!source) return
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        receivedBytes += chunk.byteLength
        if (receivedBytes > maxFileBytes) {
          overLimit = true
          throw tooLarge(`more (${receivedBytes} bytes so far)`)
        }
        yield chunk
      }
    }
    try {
      await agent.writeFile(id, path, counted(), { signal: c.var.signal })
    } catch (err) {
      // The agent may wrap the error it saw in the data; the cause is still the size.
      if (overLimit) return refuse(`more (${receivedBytes} bytes so far)`)
      throw err
    }
    if (overLimit) return refuse(`more (${receivedBytes} bytes so far)`)
    logger.info({ sandboxId: id, path, bytes: receivedBytes }, 'file written')
    return c.body(null, 204)
  })

  app.get('/v1/sandboxes/:id/fs/list', async (c) => {
    const id = c.req.param('id')
    const { path } = queryOf(c, pathQuery)
    sandboxes.requireStarted(id)
    return c.json(await agent.listDir(id, path, { signal: c.var.signal }))
  })

  app.get('/v1/sandboxes/:id/fs/stat', async (c) => {
    const id = c.req.param('id')
    const { path } = queryOf(c, pathQuery)
    sandboxes.requireStarted(id)
    return c.json(await agent.stat(id, path, { signal: c.var.signal }))
  })

  app.post('/v1/sandboxes/:id/fs/mkdir', async (c) => {
    const id = c.req.param('id')
    const body = await bodyOf(c, mkdirBody)
    sandboxes.requireStarted(id)
    await agent.mkdir(id, body.path, body.parents, { signal: c.var.signal })
    return c.body(null, 204)
  })

  app.post('/v1/sandboxes/:id/fs/remove', async (c) => {
    const id = c.req.param('id')
    const body = await bodyOf(c, removeBody)
    sandboxes.requireStarted(id)
    await agent.remove(id, body.path, body.recursive, { signal: c.var.signal })
    return c.body(null, 204)
  })

  app.post('/v1/sandboxes/:id/fs/rename', async (c) => {
    const id = c.req.param('id')
    const body = await bodyOf(c, renameBody)
    sandboxes.requireStarted(id)
    await agent.rename(id, body.from, body.to, { signal: c.var.signal })
    return c.body(null, 204)
  })
}
