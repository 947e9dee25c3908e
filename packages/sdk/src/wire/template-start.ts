/**
 * A template's start command: a process every sandbox of the template runs at create, in the
 * background, and a check that says when it is ready. A create returns only once it is.
 */
import { z } from 'zod'

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
const noNul = (what: string) => z.string().min(1).refine((v) => !v.includes('\0'), `${what} without NUL bytes`)

/** When the start command counts as ready: an HTTP GET inside the sandbox answers 2xx, or a command exits 0. */
export const templateReadyCheckSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('http'),
    /** A port on the sandbox's loopback. */
    port: z.number().int().min(1).max(65535),
    /** @default '/' */
    path: z.string().regex(/^\/[\x21-\x7e]*$/, 'a URL path starting with /').default('/'),
  }),
  z.strictObject({
    type: z.literal('command'),
    /** A shell string, run with /bin/sh -c as the start command's user, again until it exits 0. */
    cmd: noNul('a shell string'),
  }),
])

/** A template's start command as template.json, the HTTP API and the SDK carry it. */
export const templateStartSchema = z.strictObject({
  /** A shell string, run with /bin/sh -c. */
  cmd: noNul('a shell string').pipe(z.string().max(64 * 1024)),
  /** A user name from the sandbox's /etc/passwd, or a uid. @default 'root' */
  user: z.string().regex(/^[a-z_][a-z0-9_-]*$|^[0-9]+$/, 'a user name or uid').default('root'),
  /** @default the user's home */
  cwd: z.string().startsWith('/', 'an absolute path').optional(),
  /** Set for the start command over the sandbox's own env vars. */
  env: z.record(envName, z.string().refine((v) => !v.includes('\0'), 'a value without NUL bytes')).default({}),
  ready: templateReadyCheckSchema,
  /** How long a create waits for the ready check before it fails. @default 60000 */
  readyTimeoutMs: z.number().int().min(100).max(15 * 60_000).default(60_000),
})

/** A template's start command, defaults filled in. */
export type TemplateStart = z.output<typeof templateStartSchema>
/** A start command as a request or a recipe may give it. */
export type TemplateStartInput = z.input<typeof templateStartSchema>
