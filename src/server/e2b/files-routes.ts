/** envd's plain HTTP: `GET /files` (download), `POST /files` (multipart or octet-stream upload), `GET /health`. */
import { pipeline, Readable } from 'node:stream'
import { createGunzip, createGzip } from 'node:zlib'
import type { Context, Hono } from 'hono'
import type { AgentApi } from '../../agent/index.js'
import { idPattern, SandstormError } from '../../shared/index.js'
import type { SandboxService } from '../sandbox-service.js'
import { requestBody } from '../request-body.js'
import { capBytes } from '../body-limits.js'
import type { ServerEnv } from '../context.js'
import type { AccessTokens } from '../access-tokens.js'
import { statEntry } from './entry-listing.js'
import type { HelperSlots } from './helper-slots.js'
import { envdScope, resolvePath, runningScope } from './envd-scope.js'
import type { EnvdScope, HeaderSource } from './envd-scope.js'
import { metadataOf, writeArgv } from './file-metadata.js'
import { FileType } from './gen/filesystem/filesystem_pb.js'
import type { ProcessRegistry } from './process-registry.js'
import { fileParts } from './multipart.js'
import { runChecked } from './sandbox-run.js'
import { createScanBudgets } from './scan-budgets.js'
import { checkSignature, signatureMatches } from './signed-urls.js'
import type { SignedQuery } from './signed-urls.js'
import { parseMetaField } from './xattr-perl.js'

/** What the routes need. */
export interface FilesRoutesDeps {
  agent: AgentApi
  sandboxes: SandboxService
  tokens: AccessTokens
  registry: ProcessRegistry
  /** Larger uploads answer 413. */
  maxFileBytes: number
  /** Turns per sandbox for the helpers that list. */
  helperSlots: HelperSlots
}

/** The port E2B's SDK reaches envd on: a Host of `49983-<id>.<domain>` names the sandbox. */
const envdPort = 49983

/** A signature as the SDK makes them: `v1_` and a SHA-256 in base64 without padding. */
const signatureShape = /^v1_[A-Za-z0-9+/]{43}$/
/** Signed URLs that name no sandbox (each tries every running sandbox's key): so many a second from one address, in bursts of twice that. */
const scansPerSecond = 20
/** Clients whose budgets are kept at once (past that, the least recently used is forgotten). */
const maxScanBudgets = 10_000

/** One written file as envd answers it: metadata only when the file has some. */
interface WrittenEntry {
  name: string
  type: 'file'
  path: string
  metadata?: Record<string, string>
}

/** Registers the routes. */
export function filesRoutes(app: Hono<ServerEnv>, deps: FilesRoutesDeps): void {
  const { agent, sandboxes, tokens, registry, maxFileBytes } = deps
  // A token bucket for the scans per client: requests without a key must not hold the server's
  // CPU, and one client's guesses must not use up another's signed URLs.
  const scanBudgets = createScanBudgets({ perSecond: scansPerSecond, maxClients: maxScanBudgets })

  /** The files API names its user in the query, not in a header. */
  const withQueryUser = (c: Context<ServerEnv>, scope: EnvdScope): EnvdScope => {
    const username = c.req.query('username')
    if (!username || username === scope.user) return scope
    if (!/^[a-z_][a-z0-9_-]*$/.test(username)) throw new SandstormError('invalid_argument', `username "${username}": expected a user name`)
    return { ...scope, user: username, home: username === 'root' ? '/root' : `/home/${username}` }
  }

  /**
   * As envd: the access token when one is sent, else a signed URL. A signed URL fetched as it
   * is (no E2b-Sandbox-Id, no `49983-<id>` Host) names its sandbox through its signature alone: the
   * running sandbox whose token made it.
   */
  const fileScope = (c: Context<ServerEnv>, operation: 'read' | 'write'): EnvdScope => {
    const headers: HeaderSource = { get: (name) => c.req.header(name) ?? null }
    if (c.req.header('x-access-token') !== undefined) return withQueryUser(c, envdScope(headers, sandboxes, tokens))
    const query: SignedQuery = {
      path: c.req.query('path') ?? '',
      user: c.req.query('username') ?? '',
      signature: c.req.query('signature'),
      expiration: c.req.query('signature_expiration'),
    }
    if (query.signature === undefined) throw new SandstormError('unauthenticated', 'unauthorized access, please provide a valid access token or method signing if supported')
    // Without a sandbox named, each running sandbox's key is tried: only for a signature of the
    // right shape, over a path a file can have, within the scans' budget.
    const named = c.req.header('e2b-sandbox-id') ?? hostSandbox(c.req.header('host'))
    if (named === undefined) {
      if (!signatureShape.test(query.signature) || query.path.length > 4096) throw new SandstormError('unauthenticated', 'invalid signature')
      if (!scanBudgets.take(c.env.incoming.socket.remoteAddress ?? '')) throw new SandstormError('resource_exhausted', 'too many signed file requests that name no sandbox: try again in a second, or send E2b-Sandbox-Id')
    }
    const sandboxId = named ?? sandboxes.list({ state: 'running' }).find((s) => signatureMatches(query, operation, tokens.tokenFor(s.id)))?.id
    if (sandboxId === undefined) throw new SandstormError('unauthenticated', 'invalid signature')
    checkSignature(query, operation, tokens.tokenFor(sandboxId))
    // The signature covers the user (the default one when its username is empty): an unsigned
    // Authorization header must not change whose file, and whose home, the URL reaches.
    return withQueryUser(c, runningScope(sandboxId, { get: () => null }, sandboxes))
  }

  const hide = (scope: EnvdScope) => (pid: number) => registry.hide(scope.sandboxId, pid)

  app.get('/health', (c) => {
    envdScope({ get: (name) => c.req.header(name) ?? null }, sandboxes, tokens)
    return c.body(null, 204)
  })

  app.get('/files', async (c) => {
    const scope = fileScope(c, 'read')
    const path = resolvePath(scope, requiredPath(c.req.query('path')))
    const signal = c.var.signal
    const entry = await statEntry(agent, scope.sandboxId, 'read', path, { slots: deps.helperSlots, signal, onPid: hide(scope) })
    if (entry?.type === FileType.DIRECTORY) throw new SandstormError('invalid_argument', `read ${path}: is a directory (expected a file)`)
    const gzip = /\bgzip\b/.test(c.req.header('accept-encoding') ?? '') && c.req.query('gzip') !== 'false'
    const body = Readable.from(agent.readFile(scope.sandboxId, path, { signal }))
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(entry?.name ?? 'file')}`,
    }
    if (entry?.size === 0n && !gzip) headers['content-length'] = '0'
    if (gzip) headers['content-encoding'] = 'gzip'
    // pipeline, not pipe: a read that fails in the sandbox must fail the gzip stream too, not be an
    // error event on a stream nobody listens to (which ends the process).
    const stream = gzip ? pipeline(body, createGzip(), () => undefined) : body
    return new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, { status: 200, headers })
  })

  app.post('/files', async (c) => {
    const scope = fileScope(c, 'write')
    // Checked before anything is written: a refused upload leaves no file, as envd's.
    const metadata = metadataOf(c.req.raw.headers)
    const signal = c.var.signal
    const contentType = c.req.header('content-type') ?? ''
    const raw = Readable.from(requestBody(c) ?? [])
    const written: WrittenEntry[] = []
    const write = async (path: string, data: AsyncIterable<Uint8Array>) => {
      // As the caller: the file and the parents it makes are theirs, and what they may not write stays so.
      const stored = await runChecked(agent, scope.sandboxId, 'write', path, writeArgv(path, metadata), { user: scope.user, stdin: data, signal, onPid: hide(scope) })
      const kept = parseMetaField(stored.toString('utf8').trim())
      written.push({ name: path.split('/').pop() ?? path, type: 'file', path, ...(kept ? { metadata: kept } : {}) })
    }
    if (contentType.startsWith('multipart/form-data')) {
      // Each part streams into the sandbox as it arrives; nothing of the upload is held whole.
      const queryPath = c.req.query('path')
      for await (const part of fileParts(raw, contentType, { maxFileBytes })) {
        // The SDK names each part with its path; a single-file upload may give it in the query instead.
        await write(resolvePath(scope, requiredPath(queryPath || part.filename)), part.data)
      }
    } else {
      const path = resolvePath(scope, requiredPath(c.req.query('path')))
      const gunzip = /\bgzip\b/.test(c.req.header('content-encoding') ?? '')
      // pipeline, not pipe: an upload its client cuts off fails the gunzip stream too.
      await write(path, capBytes(gunzip ? pipeline(raw, createGunzip(), () => undefined) : raw, maxFileBytes))
    }
    if (written.length === 0) throw new SandstormError('invalid_argument', 'no file in the upload: expected a multipart part or an octet-stream body')
    return c.json(written)
  })
}

function requiredPath(path: string | undefined): string {
  if (!path) throw new SandstormError('invalid_argument', 'missing query parameter "path": expected the file\'s path in the sandbox')
  return path
}

/** The sandbox of a Host `49983-<id>.<domain>`, as E2B's SDK builds envd's URL without E2B_SANDBOX_URL. */
function hostSandbox(host: string | undefined): string | undefined {
  const label = (host ?? '').toLowerCase().split('.')[0] ?? ''
  const prefix = `${envdPort}-`
  if (!label.startsWith(prefix)) return undefined
  const id = label.slice(prefix.length)
  return idPattern.test(id) ? id : undefined
}
