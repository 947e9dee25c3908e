/** Where the server is and how to authenticate, resolved from options, environment and defaults. */
import { AuthenticationError, InvalidArgumentError } from './errors.js'
import { defaultFetch } from './node-fetch.js'

/** Default address of a server started by `sandstorm up`. */
export const defaultApiUrl = 'http://127.0.0.1:7420'

/** Default per-request deadline. */
export const defaultRequestTimeoutMs = 60_000

/** Options that every SDK call takes. */
export interface ConnectionOptions {
  /** API key. @default env SANDSTORM_API_KEY, else the file `${SANDSTORM_DATA_DIR:-/var/lib/sandstorm}/api-key` */
  apiKey?: string
  /** Base URL of the server. @default env SANDSTORM_URL, else 'http://127.0.0.1:7420' */
  apiUrl?: string
  /** Cancels the call. */
  signal?: AbortSignal
  /**
   * Deadline of each request until its answer starts; streamed bodies (command output, file
   * downloads) are not bounded by it. 0 means none. @default 60000
   */
  requestTimeoutMs?: number
  /**
   * The fetch every request goes through. Its answers' body may be a web ReadableStream or any
   * AsyncIterable<Uint8Array> (a Node stream, from a fetch over node:http).
   * @default under Node, one over node:http for http URLs (undici's costs some 250 ms of CPU at its first call, and more per request); elsewhere globalThis.fetch
   */
  fetch?: typeof fetch
}

/** A resolved connection: everything but the per-call signal. */
export interface Connection {
  apiUrl: string
  /** Read lazily, so that a missing key is reported on the first call that needs it. */
  apiKey: () => string
  requestTimeoutMs: number
  fetch: typeof fetch
}

/** Environment variables, as `process.env` holds them. */
export type Environment = Record<string, string | undefined>

/** The process's environment where there is one (Node, Bun, Deno); none in a browser. */
function processEnv(): Environment {
  const env = (globalThis as { process?: { env?: Environment } }).process?.env
  const out: Environment = {}
  if (!env) return out
  for (const key of ['SANDSTORM_URL', 'SANDSTORM_API_KEY', 'SANDSTORM_DATA_DIR']) {
    try {
      out[key] = env[key]
    } catch {
      // Deno without --allow-env throws on a read: the variable counts as unset.
    }
  }
  return out
}

/**
 * Reads a file where the runtime has node:fs (Node 20.16+, Bun, Deno), through
 * `process.getBuiltinModule`, so that the SDK imports no Node module and bundles for browsers.
 */
function readTextFile(path: string): string {
  type Fs = { readFileSync(path: string, encoding: 'utf8'): string }
  const fs = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule?.('node:fs') as Fs | undefined
  if (!fs) throw Object.assign(new Error('this runtime has no file system'), { code: 'ENOSYS' })
  return fs.readFileSync(path, 'utf8')
}

/** Where `sandstorm up` keeps its API key unless told otherwise. */
export function defaultApiKeyPath(env: Environment = processEnv()): string {
  return `${(env.SANDSTORM_DATA_DIR || '/var/lib/sandstorm').replace(/\/+$/, '')}/api-key`
}

/** Resolves options over the environment and the single-machine defaults. */
export function resolveConnection(options: ConnectionOptions = {}, env: Environment = processEnv()): Connection {
  const apiUrl = (options.apiUrl ?? env.SANDSTORM_URL ?? defaultApiUrl).replace(/\/+$/, '')
  if (!/^https?:\/\/[^/]/.test(apiUrl)) {
    throw new InvalidArgumentError('invalid_argument', `expected apiUrl (or SANDSTORM_URL) such as ${defaultApiUrl}, got "${apiUrl}"`)
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? defaultRequestTimeoutMs
  if (!Number.isFinite(requestTimeoutMs) || requestTimeoutMs < 0) {
    throw new InvalidArgumentError('invalid_argument', `expected requestTimeoutMs to be 0 or more, got ${requestTimeoutMs}`)
  }
  let key = options.apiKey ?? env.SANDSTORM_API_KEY
  const apiKey = (): string => {
    if (key) return key
    const path = defaultApiKeyPath(env)
    try {
      key = readTextFile(path).trim()
    } catch (err) {
      const why = (err as { code?: string }).code ?? String(err)
      throw new AuthenticationError(
        'unauthenticated',
        `no API key: pass { apiKey }, set SANDSTORM_API_KEY (or --api-key), or run where ${path} is readable (it was not: ${why})`,
      )
    }
    if (!key) throw new AuthenticationError('unauthenticated', `no API key: ${path} is empty; pass { apiKey } or set SANDSTORM_API_KEY`)
    return key
  }
  return { apiUrl, apiKey, requestTimeoutMs, fetch: options.fetch ?? sharedDefaultFetch() }
}

let sharedFetch: typeof fetch | undefined
/** One default fetch for every connection of the process. */
function sharedDefaultFetch(): typeof fetch {
  return (sharedFetch ??= defaultFetch())
}

/** A connection with some options laid over it (an instance call over its sandbox's connection). */
export function overlayConnection(base: Connection, options: ConnectionOptions = {}): Connection {
  if (options.apiKey === undefined && options.apiUrl === undefined && options.requestTimeoutMs === undefined && options.fetch === undefined) return base
  const over = resolveConnection({
    apiUrl: options.apiUrl ?? base.apiUrl,
    requestTimeoutMs: options.requestTimeoutMs ?? base.requestTimeoutMs,
    apiKey: options.apiKey,
    fetch: options.fetch ?? base.fetch,
  })
  return options.apiKey === undefined ? { ...over, apiKey: base.apiKey } : over
}
