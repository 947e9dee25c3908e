/** autoResume for envd: a call to a paused sandbox whose policy allows it resumes the sandbox first. */
import type { MiddlewareHandler } from 'hono'
import type { ServerEnv } from '../context.js'
import type { SandboxService } from '../sandbox-service.js'
import type { AccessTokens } from '../access-tokens.js'

/**
 * Middleware for every envd path (process and filesystem calls, /files, /health). It only wakes a
 * sandbox for a caller holding the sandbox's access token; everything else (a wrong token, a paused
 * sandbox without autoResume) is left to the handler, which answers as it always does.
 */
export function envdWake(sandboxes: Pick<SandboxService, 'wake'>, tokens: AccessTokens, isEnvdPath: (path: string) => boolean): MiddlewareHandler<ServerEnv> {
  return async (c, next) => {
    if (!isEnvdPath(c.req.path)) return next()
    const id = c.req.header('e2b-sandbox-id')
    if (id && tokens.verify(id, c.req.header('x-access-token'))) await sandboxes.wake(id, { signal: c.var.signal })
    return next()
  }
}
