import type { Context } from 'hono'
import { z } from 'zod'
import { boundedText } from './body-limits.js'
import { requestBody } from './request-body.js'
import type { ServerEnv } from './context.js'
import { parseInput, parseJsonText } from './validation.js'

/** The JSON body, validated; an empty body counts as `{}`. */
export async function bodyOf<S extends z.ZodType>(c: Context<ServerEnv>, schema: S): Promise<z.output<S>> {
  return parseInput(schema, await jsonOf(c))
}

/**
 * The JSON body, parsed; an empty body counts as `{}`. Read up to `maxJsonBytes` and no further
 * (413 past it), whether or not the app's body limit ran first: a route it leaves out by mistake
 * still reads a bounded body.
 */
export async function jsonOf(c: Context<ServerEnv>): Promise<unknown> {
  // Under the Node server, the Node request itself: no web Request and body stream are made over
  // it, as c.req.raw.body would. (The adapter's web body reads the Node request only once it is
  // read itself, so one made before, by a look at c.req.raw.signal, takes nothing.) Past the cap,
  // the rest is read and dropped (request-body.ts).
  return parseJsonText(await boundedText(requestBody(c)))
}

/** The query, validated; a key given twice counts once (the first), unless the schema wants an array. */
export function queryOf<S extends z.ZodType>(c: Context<ServerEnv>, schema: S): z.output<S> {
  return parseInput(schema, c.req.query())
}

const pidParam = z.strictObject({
  pid: z.string().regex(/^[1-9][0-9]{0,9}$/, 'a process id (a positive integer)'),
})

/** The `:pid` of a process route. */
export function pidOf(c: Context<ServerEnv>): number {
  return Number(parseInput(pidParam, { pid: c.req.param('pid') }).pid)
}

/** Bytes from a base64 field; anything else than base64 is a 400 naming the field. */
export function base64Field(field: string, value: string | undefined): Uint8Array | undefined {
  if (value === undefined) return undefined
  parseInput(z.strictObject({ [field]: z.base64('base64 bytes') }), { [field]: value })
  return new Uint8Array(Buffer.from(value, 'base64'))
}
