/** GET /v1/sandboxes/:id/metrics: the range of a sandbox's usage series. */
import { z } from 'zod'

/** An instant as ISO 8601 with a zone (`2026-12-04T17:00:00.000Z`), as `createdAt` is written. */
export const isoInstant = z.iso.datetime({ offset: true, error: 'an ISO 8601 time such as 2026-12-04T17:00:00Z' })

/** Query of GET /v1/sandboxes/:id/metrics: samples with `start <= timestamp <= end`. */
export const metricsQuery = z.strictObject({
  /** @default the sandbox's start */
  start: isoInstant.optional(),
  /** @default now */
  end: isoInstant.optional(),
})
export type MetricsQuery = z.input<typeof metricsQuery>
