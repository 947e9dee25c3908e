/** Templates as the server lists them. */
import type { TemplateInfo } from '../shared/index.js'
import { resolveConnection, type ConnectionOptions } from './connection.js'
import { createApiClient } from './http-client.js'

/** Templates the server can create sandboxes from. */
export function listTemplates(options: ConnectionOptions = {}): Promise<TemplateInfo[]> {
  return createApiClient(resolveConnection(options)).json<TemplateInfo[]>({ method: 'GET', path: '/v1/templates', signal: options.signal })
}
