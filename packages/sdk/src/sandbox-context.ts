import type { ConnectionOptions } from './connection.js'
import type { ApiClient } from './http-client.js'

/** What the parts of a sandbox (commands, files) share: its id and a client per call. */
export interface SandboxContext {
  readonly sandboxId: string
  /** A client over the sandbox's connection with this call's options laid over it. */
  clientFor(options?: ConnectionOptions): ApiClient
  /** `/v1/sandboxes/<id>` and the rest of the path. */
  path(rest?: string): string
}
