import type { Hono } from 'hono'
import type { AgentExecRequest } from '../agent/index.js'
import { execBody, signalBody, stdinBody, terminalSize } from '../shared/index.js'
import type { RouteDeps, ServerEnv } from './context.js'
import { base64Field, bodyOf, pidOf } from './request-input.js'
import { scopedSignal } from './scoped-signal.js'
import { ndjsonResponse, peek, rest, streamSignal } from './streams.js'

/** Exec (foreground NDJSON or background, on a terminal or not), and the processes it started: list, follow, stdin, signal, resize. */
export function execRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  const { agent, sandboxes, metrics, logger } = deps

  app.post('/v1/sandboxes/:id/exec', async (c) => {
    const id = c.req.param('id')
    const body = await bodyOf(c, execBody)
    const request: AgentExecRequest = {
      argv: body.cmd !== undefined ? ['/bin/sh', '-c', body.cmd] : body.argv!,
      env: body.env ?? {},
      cwd: body.cwd,
      user: body.user,
      stdin: base64Field('stdinBase64', body.stdinBase64),
      keepStdin: body.keepStdin,
      timeoutMs: body.timeoutMs,
      ...(body.pty ? { pty: body.pty, keepStdin: true } : {}),
    }
    sandboxes.requireStarted(id)
    const startedAt = performance.now()
    const start = scopedSignal(c.var.signal)
    const { pid } = await agent.exec(id, request, { signal: start.signal }).finally(start.release)
    metrics.execSeconds.observe((performance.now() - startedAt) / 1000)
    logger.info({ sandboxId: id, pid, background: body.background === true }, 'process started')
    if (body.background) return c.json({ pid }, 201)
    const { stop, signal } = streamSignal(c.var.signal)
    const events = async function* () {
      yield { type: 'start', pid } as const
      // The start is sent above; a follow that replays it must not send it twice.
      for await (const event of agent.follow(id, pid, { signal })) if (event.type !== 'start') yield event
    }
    return ndjsonResponse(events(), { stop, signal, logger, context: { sandboxId: id, pid } })
  })

  app.get('/v1/sandboxes/:id/processes', async (c) => {
    const id = c.req.param('id')
    sandboxes.requireStarted(id)
    return c.json(await agent.processes(id, { signal: c.var.signal }))
  })

  app.get('/v1/sandboxes/:id/processes/:pid/events', async (c) => {
    const id = c.req.param('id')
    const pid = pidOf(c)
    sandboxes.requireStarted(id)
    const { stop, signal } = streamSignal(c.var.signal)
    // An unknown pid fails on the first event: read it before the status is sent.
    const peeked = await peek(agent.follow(id, pid, { signal }))
    return ndjsonResponse(rest(peeked), { stop, signal, logger, context: { sandboxId: id, pid } })
  })

  app.post('/v1/sandboxes/:id/processes/:pid/stdin', async (c) => {
    const id = c.req.param('id')
    const pid = pidOf(c)
    const body = await bodyOf(c, stdinBody)
    const data = base64Field('dataBase64', body.dataBase64) ?? null
    sandboxes.requireStarted(id)
    await agent.writeStdin(id, pid, data, body.close === true, { signal: c.var.signal })
    return c.body(null, 204)
  })

  app.post('/v1/sandboxes/:id/processes/:pid/signal', async (c) => {
    const id = c.req.param('id')
    const pid = pidOf(c)
    const body = await bodyOf(c, signalBody)
    sandboxes.requireStarted(id)
    await agent.signal(id, pid, body.signal, { signal: c.var.signal })
    logger.info({ sandboxId: id, pid, signal: body.signal }, 'signal sent')
    return c.body(null, 204)
  })

  app.post('/v1/sandboxes/:id/processes/:pid/resize', async (c) => {
    const id = c.req.param('id')
    const pid = pidOf(c)
    const size = await bodyOf(c, terminalSize)
    sandboxes.requireStarted(id)
    await agent.resizePty(id, pid, size, { signal: c.var.signal })
    return c.body(null, 204)
  })
}
