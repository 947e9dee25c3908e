/** GET /v1/sandboxes: filters, order and paging of the sandbox list. */
import { z } from 'zod'
import { maxListLimit, sandboxStates } from './list-limits.js'
import { isoInstant } from './metrics-api.js'

/**
 * Query of GET /v1/sandboxes, its keys each given once except `label` and `state` (repeatable;
 * `state` also comma-separated). All filters must match. With `limit`, the answer's `X-Next-Token`
 * header, when present, is the `nextToken` of the next page.
 */
export const listSandboxesQuery = z.strictObject({
  label: z.array(z.string().regex(/^[^=]+=/, 'a label filter "key=value"')).optional(),
  /** One state or several, comma-separated. */
  state: z
    .string()
    .regex(new RegExp(`^(${sandboxStates.join('|')})(,(${sandboxStates.join('|')}))*$`), `one of ${sandboxStates.map((s) => JSON.stringify(s)).join(', ')} (or several, comma-separated)`)
    .optional(),
  template: z.string().min(1).optional(),
  /** Started at or after this time. */
  startedAfter: isoInstant.optional(),
  /** Started at or before this time. */
  startedBefore: isoInstant.optional(),
  /** By start time. @default 'asc' (oldest first) */
  order: z.enum(['asc', 'desc']).optional(),
  limit: z.coerce.number().int().min(1).max(maxListLimit).optional(),
  nextToken: z.string().min(1).optional(),
})
export type ListSandboxesQuery = z.input<typeof listSandboxesQuery>
