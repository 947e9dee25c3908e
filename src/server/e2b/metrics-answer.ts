/**
 * E2B's sandbox metrics (GET /sandboxes/:id/metrics, the SDK's getMetrics): the samples taken every
 * few seconds with a time within [start, end], Unix seconds both, from the sandbox's start to now
 * unless given. `end` counts its whole second, as the SDK rounds the Dates it is given to seconds.
 */
import type { Context } from 'hono'
import { z } from 'zod'
import { SandstormError } from '../../shared/index.js'
import type { SandboxInfo } from '../../shared/index.js'
import type { ServerEnv } from '../context.js'
import type { UsageHistory } from '../usage-history.js'
import { parseInput } from '../validation.js'

const unixSeconds = z.string().regex(/^\d{1,11}$/, 'a Unix time in seconds')
const metricsQuery = z.looseObject({ start: unixSeconds.optional(), end: unixSeconds.optional() })

/** Answers with `info`'s samples in the range the request asks for. */
export function metricsAnswer(c: Context<ServerEnv>, info: SandboxInfo, history: UsageHistory): Response {
  const query = parseInput(metricsQuery, { start: c.req.query('start'), end: c.req.query('end') })
  const startMs = query.start === undefined ? Date.parse(info.createdAt) : Number(query.start) * 1000
  const endMs = query.end === undefined ? Date.now() : Number(query.end) * 1000 + 999
  if (query.start !== undefined && query.end !== undefined && Number(query.end) < Number(query.start)) {
    throw new SandstormError('invalid_argument', `end: expected a Unix time at or after start (${query.start}), got ${query.end}`)
  }
  return c.json(
    history.range(info.id, startMs, endMs).map((m) => {
      const atMs = Date.parse(m.timestamp)
      return {
        timestamp: m.timestamp,
        timestampUnix: Math.floor(atMs / 1000),
        cpuCount: Math.max(1, Math.round(m.cpus)),
        cpuUsedPct: m.cpuUsedPct,
        memUsed: m.memoryUsedBytes,
        memTotal: m.memoryLimitBytes,
        // Page cache is counted in memUsed: cgroup v1 charges it to the sandbox and reports it so.
        memCache: 0,
        diskUsed: m.diskUsedBytes,
        diskTotal: m.diskLimitBytes,
      }
    }),
  )
}
