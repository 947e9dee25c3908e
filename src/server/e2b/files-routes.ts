/** envd's plain HTTP: `GET /files` (download), `POST /files` (multipart or octet-stream upload), `GET /health`. */
import { Readable } from 'node:stream'
import { createGunzip, createGzip } from 'node:zlib'
import type { Context, Hono } from 'hono'
import type { AgentApi } from '../../agent/index.js'
import { SandstormError } from '../../shared/index.js'
import type { SandboxService } from '../sandbox-service.js'
import { capBytes } from '../body-limits.js'
import type { ServerEnv } from '../context.js'
import type { AccessTokens } from '../access-tokens.js'
import { findArgv, parseFind } from './entry-info.js'
import { envdScope, resolvePath } from './envd-scope.js'
import type { EnvdScope } from './envd-scope.js'
import { FileType } from './gen/filesystem/filesystem_pb.js'
import type { ProcessRegistry } from './process-registry.js'
import { fileParts } from './multipart.js'
import { runChecked } from './sandbox-run.js'

/** What the routes need. */
export interface FilesRoutesDeps {
  agent: AgentApi
  sandboxes: SandboxService
  tokens: AccessTokens
  registry: ProcessRegistry
  /** Larger uploads answer 413. */
  maxFileBytes: number
}

/** Writes stdin to the path as the user, making parent directories, as envd does. */
const writeScript = 'mkdir -p -- "$(dirname -- "$1")" && exec cat > "$1"'

/** Registers the routes. */
export function filesRoutes(app: Hono<ServerEnv>, deps: FilesRoutesDeps): void {
  const { agent, sandboxes, tokens, registry, maxFileBytes } = deps

  const scopeOf = (c: Context<ServerEnv>): EnvdScope => {
    const scope = envdScope({ get: (name) => c.req.header(name) ?? null }, sandboxes, tokens)
    // The files API names its user in the query, not in a header.
    const username = c.req.query('username')
    if (username && username !== scope.user) {
      if (!/^[a-z_][a-z0-9_-]*$/.test(username)) throw new SandstormError('invalid_argument', `username "${username}": expected a user name`)
      return { ...scope, user: username, home: username === 'root' ? '/root' : `/home/${username}` }
    }
    return scope
  }

  const hide = (scope: EnvdScope) => (pid: number) => registry.hide(scope.sandboxId, pid)

  app.get('/health', (c) => {
    scopeOf(c)
    return c.body(null, 204)
  })

  app.get('/files', async (c) => {
    const scope = scopeOf(c)
    const path = resolvePath(scope, requiredPath(c.req.query('path')))
    const signal = c.var.signal
    const [entry] = parseFind(await runChecked(agent, scope.sandboxId, 'read', path, findArgv(path, 0, 0), { signal, onPid: hide(scope) }))
    if (entry?.type === FileType.DIRECTORY) throw new SandstormError('invalid_argument', `read ${path}: is a directory (expected a file)`)
    const gzip = /\bgzip\b/.test(c.req.header('accept-encoding') ?? '') && c.req.query('gzip') !== 'false'
    const body = Readable.from(agent.readFile(scope.sandboxId, path, { signal }))
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(entry?.name ?? 'file')}`,
    }
    if (entry?.size === 0n && !gzip) headers['content-length'] = '0'
    if (gzip) headers['content-encoding'] = 'gzip'
    const stream = gzip ? body.pipe(createGzip()) : body
    return new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, { status: 200, headers })
  })

  app.post('/files', async (c) => {
    const scope = scopeOf(c)
    const signal = c.var.signal
    const contentType = c.req.header('content-type') ?? ''
    const raw = c.req.raw.body ? Readable.fromWeb(c.req.raw.body as import('node:stream/web').ReadableStream<Uint8Array>) : Readable.from([])
    const written: { name: string; type: 'file'; path: string }[] = []
    const write = async (path: string, data: AsyncIterable<Uint8Array>) => {
      await runChecked(agent, scope.sandboxId, 'write', path, ['/bin/sh', '-c', writeScript, 'e2b-write', path], { user: scope.user, stdin: data, signal, onPid: hide(scope) })
      written.push({ name: path.split('/').pop() ?? path, type: 'file', path })
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
      await write(path, capBytes(gunzip ? raw.pipe(createGunzip()) : raw, maxFileBytes))
    }
    if (written.length === 0) throw new SandstormError('invalid_argument', 'no file in the upload: expected a multipart part or an octet-stream body')
    return c.json(written)
  })
}

function requiredPath(path: string | undefined): string {
  if (!path) throw new SandstormError('invalid_argument', 'missing query parameter "path": expected the file\'s path in the sandbox')
  return path
}
