/**
 * Starts the real server on 127.0.0.1, port 0, over the fake agent, with a plain node:http client
 * (one connection per request, so every socket can be waited for) and a log capture. Tests only.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import type { Logger } from '../shared/index.js'
import { createFakeAgent } from './fake-agent.fixture.js'
import type { FakeAgent } from './fake-agent.fixture.js'
import { startServer } from './index.js'
import type { RunningServer, ServerOptions } from './index.js'

/** One parsed log line. */
export type LogRecord = Record<string, unknown> & { msg?: string; sandboxId?: string }

/** Log lines as they are written, and a way to wait for one. */
export interface LogCapture {
  logger: Logger
  records: LogRecord[]
  /** Resolves with the first line (already written or still to come) that matches. */
  waitFor(match: (r: LogRecord) => boolean): Promise<LogRecord>
}

/** A pino logger whose lines are kept in memory. */
export function captureLogs(): LogCapture {
  const records: LogRecord[] = []
  const waiters = new Set<{ match: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void }>()
  const logger = pino({ level: 'debug' }, {
    write(line: string) {
      const record = JSON.parse(line) as LogRecord
      records.push(record)
      for (const w of waiters) if (w.match(record)) (waiters.delete(w), w.resolve(record))
    },
  })
  return {
    logger,
    records,
    waitFor(match) {
      const seen = records.find(match)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve) => waiters.add({ match, resolve }))
    },
  }
}

/** A response read whole. */
export interface TestResponse {
  status: number
  headers: IncomingMessage['headers']
  body: Buffer
  json: any
}

/** How to send a request. */
export interface RequestOptions {
  /** JSON-encoded unless a Buffer. */
  body?: unknown
  /** Sent one by one without Content-Length (chunked). */
  chunks?: Buffer[]
  /** The key to send; null sends none. @default the server's key */
  key?: string | null
  headers?: Record<string, string>
  /** Reuse connections (a keep-alive agent) instead of one connection per request. */
  keepAlive?: boolean
}

/** A server under test. */
export interface TestServer {
  server: RunningServer
  agent: FakeAgent
  logs: LogCapture
  dataDir: string
  request(method: string, path: string, options?: RequestOptions): Promise<TestResponse>
  /** Sends a request and resolves once the response headers are in; the body is left to read. */
  open(method: string, path: string, options?: RequestOptions): Promise<IncomingMessage>
  /** Closes the server and starts another on the same data dir and agent. */
  restart(): Promise<void>
  /** Closes the server, waits for every client socket to close, asserts none is left, removes the data dir. */
  close(): Promise<void>
}

/**
 * A keep-alive agent whose idle sockets stay ref'd: node unrefs them, and then a test waiting for
 * them to close would see the loop end first.
 */
class RefAgent extends Agent {
  override keepSocketAlive(socket: Socket): void {
    // Node's own returns whether to keep the socket (false destroys it); pass that on.
    const keep = super.keepSocketAlive(socket)
    socket.ref()
    return keep
  }
}

/** Starts a server for a test. */
export async function startTestServer(options: Partial<ServerOptions> & { agent?: FakeAgent; dataDir?: string } = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'sandstorm-server-test-'))
  const agent = options.agent ?? createFakeAgent()
  const logs = captureLogs()
  const sockets = new Set<Socket>()
  const keepAliveAgent = new RefAgent({ keepAlive: true, maxSockets: 4 })
  const start = (): Promise<RunningServer> => startServer({ ...options, dataDir, agent, logger: logs.logger, port: 0 })

  const t: TestServer = {
    server: await start(),
    agent,
    logs,
    dataDir,
    async open(method, path, o = {}) {
      const url = new URL(path, t.server.url)
      const headers: Record<string, string> = { ...o.headers }
      const key = o.key === undefined ? t.server.apiKey : o.key
      if (key !== null) headers.authorization ??= `Bearer ${key}`
      let payload: Buffer | undefined
      if (o.body !== undefined) {
        payload = Buffer.isBuffer(o.body) ? o.body : Buffer.from(JSON.stringify(o.body))
        if (!Buffer.isBuffer(o.body)) headers['content-type'] ??= 'application/json'
      }
      const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname + url.search, method, headers, agent: o.keepAlive ? keepAliveAgent : false })
      req.on('socket', (socket) => {
        if (sockets.has(socket)) return
        sockets.add(socket)
        socket.once('close', () => sockets.delete(socket))
      })
      // A server that answers early (413) may reset the upload; the answer is what the test reads.
      req.on('error', () => {})
      if (o.chunks) for (const chunk of o.chunks) req.write(chunk)
      req.end(payload)
      const [res] = (await once(req, 'response')) as [IncomingMessage]
      return res
    },
    async request(method, path, o = {}) {
      const res = await t.open(method, path, o)
      const chunks: Buffer[] = []
      for await (const chunk of res) chunks.push(chunk as Buffer)
      const body = Buffer.concat(chunks)
      const json = res.headers['content-type']?.startsWith('application/json') && body.length > 0 ? JSON.parse(body.toString()) : undefined
      return { status: res.statusCode ?? 0, headers: res.headers, body, json }
    },
    async restart() {
      await t.server.close()
      t.server = await start()
    },
    async close() {
      await t.server.close()
      await Promise.all([...sockets].map((s) => (s.closed ? undefined : once(s, 'close'))))
      keepAliveAgent.destroy()
      // A closed handle leaves libuv's list in the close phase of the loop, which comes after
      // the check phase of setImmediate: give it a few turns of the loop (turns, not time).
      let open: string[] = []
      for (let turn = 0; turn < 5; turn++) {
        await new Promise((resolve) => setImmediate(resolve))
        open = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap')
        if (open.length === 0) break
      }
      assert.deepEqual(open, [], 'a socket is still open after the server closed')
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
  return t
}

/** Reads NDJSON lines from a response as they come. */
export async function* ndjsonLines(res: IncomingMessage): AsyncGenerator<any> {
  let buffered = ''
  for await (const chunk of res) {
    buffered += (chunk as Buffer).toString()
    let at: number
    while ((at = buffered.indexOf('\n')) >= 0) {
      yield JSON.parse(buffered.slice(0, at))
      buffered = buffered.slice(at + 1)
    }
  }
}

/** A GET of `/` through `url` with any Host (ingress routes by it), on a connection of its own that is closed by the time the answer is read (the test server counts open sockets). */
export function viaHost(url: string, host: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    httpRequest({ host: u.hostname, port: u.port, path: '/', headers: { ...headers, host, connection: 'close' }, setHost: false, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => res.socket.once('close', () => resolve({ status: res.statusCode ?? 0, body })).end())
    })
      .on('error', reject)
      .end()
  })
}
