import type { Hono } from 'hono'
import { buildTemplateBody, promoteBody, SandstormError, templateNameSchema, type TemplateBuildEvent } from '../shared/index.js'
import { z } from 'zod'
import type { RouteDeps, ServerEnv } from './context.js'
import { createGoldenService } from './golden-service.js'
import { bodyOf } from './request-input.js'
import { responseStream, streamSignal } from './streams.js'
import { parseInput } from './validation.js'

const nameParam = z.strictObject({ name: templateNameSchema })

/**
 * GET /v1/templates: the templates the agent can start sandboxes from; with snapshots, the golden
 * template routes too: promote, rollback and build.
 */
export function templateRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  app.get('/v1/templates', async (c) => c.json(await deps.agent.templates({ signal: c.var.signal })))
  if (!deps.snapshots) return
  const golden = createGoldenService({ agent: deps.agent, sandboxes: deps.sandboxes, snapshots: deps.snapshots, logger: deps.logger })
  const nameOf = (name: string): string => parseInput(nameParam, { name }).name

  app.post('/v1/templates/:name/promote', async (c) => {
    const name = nameOf(c.req.param('name'))
    const body = await bodyOf(c, promoteBody)
    return c.json(await golden.promote(name, body.snapshotId, { signal: c.var.signal }, body.start ? { start: body.start } : {}), 201)
  })

  app.post('/v1/templates/:name/rollback', async (c) => {
    const name = nameOf(c.req.param('name'))
    return c.json(await golden.rollback(name, { signal: c.var.signal }))
  })

  app.post('/v1/templates/:name/build', async (c) => {
    const name = nameOf(c.req.param('name'))
    const body = await bodyOf(c, buildTemplateBody)
    const templates = await deps.agent.templates({ signal: c.var.signal })
    if (!templates.some((t) => t.name === body.from)) {
      const names = templates.map((t) => t.name).join(', ') || '(none built)'
      throw new SandstormError('not_found', `unknown template "${body.from}" to build from: expected one of ${names}`)
    }
    const { stop, signal } = streamSignal(c.var.signal)
    const events = channel<TemplateBuildEvent>()
    // The build runs apart from the response: if the client goes away, it is cancelled and still cleans up.
    void golden.build(name, body, events.push, signal).finally(events.end)
    const encoder = new TextEncoder()
    const lines = (async function* () {
      for await (const event of events) yield encoder.encode(`${JSON.stringify(event)}\n`)
    })()
    const stream = responseStream(lines, { stop, signal, logger: deps.logger, context: { template: name } })
    return new Response(stream, { status: 200, headers: { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' } })
  })
}

/** An unbounded queue read as an async iterable (a build's events are few and small). */
function channel<T>(): AsyncIterable<T> & { push: (item: T) => void; end: () => void } {
  const items: T[] = []
  let ended = false
  let wake: (() => void) | undefined
  const notify = (): void => {
    wake?.()
    wake = undefined
  }
  return {
    push: (item) => {
      items.push(item)
      notify()
    },
    end: () => {
      ended = true
      notify()
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const item = items.shift()
        if (item !== undefined) {
          yield item
          continue
        }
        if (ended) return
        await new Promise<void>((resolve) => (wake = resolve))
      }
    },
  }
}
