/**
 * The server's one listening edge: a Node HTTP server in front of the one app. It is where a
 * request is told apart before any route sees it; the app answers everything it does not claim.
 */
import { createServer, type Server } from 'node:http'
import { getRequestListener } from '@hono/node-server'
import type { Hono } from 'hono'
import type { ServerEnv } from './context.js'

/** What the edge serves. */
export interface EdgeOptions {
  app: Hono<ServerEnv>
}

/** The HTTP server of the edge (not listening yet). */
export function createEdge(options: EdgeOptions): Server {
  const serveApp = getRequestListener(options.app.fetch)
  return createServer((req, res) => void serveApp(req, res))
}
