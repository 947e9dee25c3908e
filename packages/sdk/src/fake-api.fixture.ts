/**
 * A test fixture: a real `node:http` server on 127.0.0.1, port 0, that plays the documented HTTP
 * API from memory, so that the SDK and the CLI can be tested without runc. Commands are scripts
 * chosen by name (see `programs`). `close()` fails if any response is still open: a leaked
 * connection.
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { EntryInfo, ExecEvent, ProcessInfo, ProcessResult, SandboxInfo, TemplateInfo } from './wire/index.js'

/** Options of startFakeApi. */
export interface FakeApiOptions {
  /** @default 'test-key' */
  apiKey?: string
  /** PUT bodies larger than this answer 413. @default 64 MiB */
  maxFileBytes?: number
}

/** A process as the fake runs it. */
interface FakeProcess {
  pid: number
  argv: string[]
  events: ExecEvent[]
  result: ProcessResult | null
  /** Woken on every new event. */
  listeners: Set<() => void>
  stdin: Buffer[]
  stdinClosed: boolean
  stdinWaiters: Set<() => void>
  killedWith: string | null
  killWaiters: Set<(signal: string) => void>
}

/** What a scripted program can do. */
interface ProgramIo {
  out(stream: 'stdout' | 'stderr', data: string | Uint8Array): void
  /** Resolves with the next stdin chunk, or null at end of file. */
  readStdin(): Promise<Buffer | null>
  /** Resolves when the process is sent a signal. */
  killed(): Promise<string>
}

type Program = (io: ProgramIo, argv: string[], timeoutMs: number | undefined) => Promise<Partial<ProcessResult>>

/** The commands the fake knows, by the shell string or argv[0]. */
const programs: Record<string, Program> = {
  async echo(io, argv) {
    io.out('stdout', `${argv.slice(1).join(' ')}\n`)
    return { exitCode: 0 }
  },
  async fail(io) {
    io.out('stdout', 'partial\n')
    io.out('stderr', 'boom\n')
    return { exitCode: 3 }
  },
  // Sends "é€" with each multi-byte character split across two output events.
  async utf8split(io) {
    const bytes = Buffer.from('é€\n')
    io.out('stdout', bytes.subarray(0, 1))
    io.out('stdout', bytes.subarray(1, 3))
    io.out('stdout', bytes.subarray(3))
    return { exitCode: 0 }
  },
  async cat(io) {
    for (let chunk = await io.readStdin(); chunk; chunk = await io.readStdin()) io.out('stdout', chunk)
    return { exitCode: 0 }
  },
  async sleep(io) {
    const signal = await io.killed()
    return { exitCode: signal === 'SIGKILL' ? 137 : 143, signal }
  },
  // Runs past its timeoutMs: the fake ends it the way the server would.
  async hang(io, _argv, timeoutMs) {
    if (timeoutMs === undefined) await io.killed()
    return { exitCode: 137, signal: 'SIGKILL', timedOut: true }
  },
  async env(io, argv) {
    io.out('stdout', argv.join(' '))
    return { exitCode: 0 }
  },
}

/** A running fake, with what it saw. */
export interface FakeApi {
  url: string
  apiKey: string
  sandboxes: Map<string, SandboxInfo>
  files: Map<string, Buffer>
  /** Every request, as "METHOD /path?query". */
  requests: string[]
  /** Bodies of exec requests. */
  execBodies: Record<string, unknown>[]
  /** Bytes written to /dev/null, which are counted and dropped. */
  discardedBytes: number
  /** Resolves when a process is sent a signal, with the pid and the signal. */
  nextSignal(): Promise<{ pid: number; signal: string }>
  /** Resolves once no response is open. */
  idle(): Promise<void>
  /** Closes the server; rejects if a response is still open after the client had its chance to end it. */
  close(): Promise<void>
}

/** Starts the fake on 127.0.0.1 and an ephemeral port. */
export async function startFakeApi(options: FakeApiOptions = {}): Promise<FakeApi> {
  const apiKey = options.apiKey ?? 'test-key'
  const maxFileBytes = options.maxFileBytes ?? 64 * 1024 * 1024
  const sandboxes = new Map<string, SandboxInfo>()
  const processes = new Map<string, Map<number, FakeProcess>>()
  const files = new Map<string, Buffer>()
  const requests: string[] = []
  const execBodies: Record<string, unknown>[] = []
  const open = new Set<ServerResponse>()
  const idleWaiters = new Set<() => void>()
  const signalWaiters: ((s: { pid: number; signal: string }) => void)[] = []
  let nextId = 0
  let nextPid = 100

  const templates: TemplateInfo[] = [
    { name: 'debian', version: 1, description: 'Debian 12', sizeBytes: 150_000_000, buildMs: 42_000, builtAt: '2024-01-01T00:00:00.000Z', defaults: { memoryMiB: 512, cpus: 1 } },
  ]

  function fail(res: ServerResponse, status: number, code: string, message: string): void {
    json(res, status, { code, message })
  }
  function json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  }
  function noContent(res: ServerResponse): void {
    res.writeHead(204).end()
  }
  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    return Buffer.concat(chunks)
  }
  async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
    const text = (await readBody(req)).toString('utf8')
    return text ? (JSON.parse(text) as Record<string, unknown>) : {}
  }

  function emit(p: FakeProcess, event: ExecEvent): void {
    p.events.push(event)
    for (const wake of [...p.listeners]) wake()
  }

  function startProcess(sandboxId: string, body: Record<string, unknown>): FakeProcess {
    const argv = typeof body.cmd === 'string' ? ['/bin/sh', '-c', body.cmd] : (body.argv as string[])
    const name = typeof body.cmd === 'string' ? body.cmd.split(' ')[0]! : argv[0]!
    const words = typeof body.cmd === 'string' ? body.cmd.split(' ') : argv
    const p: FakeProcess = {
      pid: nextPid++,
      argv,
      events: [],
      result: null,
      listeners: new Set(),
      stdin: body.stdinBase64 ? [Buffer.from(body.stdinBase64 as string, 'base64')] : [],
      stdinClosed: !body.keepStdin,
      stdinWaiters: new Set(),
      killedWith: null,
      killWaiters: new Set(),
    }
    processes.get(sandboxId)!.set(p.pid, p)
    emit(p, { type: 'start', pid: p.pid })
    const io: ProgramIo = {
      out: (stream, data) => emit(p, { type: stream, data: Buffer.from(data).toString('base64') }),
      readStdin: async () => {
        for (;;) {
          const chunk = p.stdin.shift()
          if (chunk) return chunk
          if (p.stdinClosed) return null
          await new Promise<void>((wake) => p.stdinWaiters.add(wake))
        }
      },
      killed: () => (p.killedWith ? Promise.resolve(p.killedWith) : new Promise<string>((r) => p.killWaiters.add(r))),
    }
    const program = programs[name] ?? (async (o: ProgramIo) => (o.out('stderr', `sh: ${name}: not found\n`), { exitCode: 127 }))
    const started = Date.now()
    void program(io, words, body.timeoutMs as number | undefined).then((r) => {
      p.result = { exitCode: 0, signal: null, timedOut: false, oomKilled: false, durationMs: Date.now() - started, ...r }
      emit(p, { type: 'end', result: p.result })
    })
    return p
  }

  /** Streams a process's events from the first: kept output, then live, then `end`. */
  function follow(p: FakeProcess, req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    let sent = 0
    const wake = (): void => {
      while (sent < p.events.length) {
        const line = `${JSON.stringify(p.events[sent++])}\n`
        // Written in pieces of 7 bytes so that the client sees lines and characters split across chunks.
        for (let i = 0; i < line.length; i += 7) res.write(line.slice(i, i + 7))
      }
      if (p.result && sent === p.events.length) {
        p.listeners.delete(wake)
        res.end()
      }
    }
    p.listeners.add(wake)
    req.on('close', () => p.listeners.delete(wake))
    res.on('close', () => p.listeners.delete(wake))
    wake()
  }

  function entry(path: string, data: Buffer | undefined, dir: boolean): EntryInfo {
    return {
      name: path.split('/').pop() ?? '',
      path,
      type: dir ? 'dir' : 'file',
      size: data?.length ?? 4096,
      mode: dir ? 0o755 : 0o644,
      uid: 0,
      gid: 0,
      modifiedAt: '2024-01-01T00:00:00.000Z',
    }
  }
  const dirs = new Set<string>(['/', '/tmp'])

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x')
    requests.push(`${req.method} ${url.pathname}${url.search}`)
    const key = (req.headers.authorization ?? '').replace(/^Bearer /, '') || req.headers['x-api-key']
    if (key !== apiKey) return fail(res, 401, 'unauthenticated', 'expected a valid API key in "Authorization: Bearer <key>"')
    const parts = url.pathname.split('/').filter(Boolean)
    if (parts[0] !== 'v1') return fail(res, 404, 'not_found', `no route ${url.pathname}`)
    if (parts[1] === 'templates' && req.method === 'GET') return json(res, 200, templates)
    if (parts[1] !== 'sandboxes') return fail(res, 404, 'not_found', `no route ${url.pathname}`)

    if (parts.length === 2 && req.method === 'POST') {
      const body = await readJson(req)
      const template = (body.template as string | undefined) ?? 'debian'
      if (!templates.some((t) => t.name === template) && !template.startsWith('golden-')) return fail(res, 404, 'not_found', `expected a template such as "debian", got "${template}"`)
      if (body.memoryMiB !== undefined && (body.memoryMiB as number) < 16) return fail(res, 400, 'invalid_argument', `memoryMiB: expected at least 16, got ${String(body.memoryMiB)}`)
      const id = `sb-${String(nextId++).padStart(16, '0')}`
      const now = Date.now()
      const info: SandboxInfo = {
        id,
        template,
        state: 'running',
        runtime: (body.runtime as string | undefined) ?? 'fake',
        memoryMiB: (body.memoryMiB as number | undefined) ?? 512,
        cpus: (body.cpus as number | undefined) ?? 1,
        pidsMax: (body.pidsMax as number | undefined) ?? 1024,
        diskMiB: (body.diskMiB as number | undefined) ?? 2048,
        network: 'none',
        labels: (body.labels as Record<string, string> | undefined) ?? {},
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + ((body.timeoutMs as number | undefined) ?? 300_000)).toISOString(),
      }
      sandboxes.set(id, info)
      processes.set(id, new Map())
      // A template named golden-* answers as a golden create would, cold when memory is asked for.
      if (template.startsWith('golden-')) return json(res, 201, { ...info, ...(body.memoryMiB === undefined ? { source: 'golden', golden: { version: 2, snapshotId: 'snap-0000000000000001' } } : { source: 'cold', sourceReason: 'another config' }) })
      return json(res, 201, info)
    }
    if (parts.length === 2 && req.method === 'GET') {
      const labels = url.searchParams.getAll('label').map((l) => l.split('='))
      const state = url.searchParams.get('state')
      const list = [...sandboxes.values()].filter((s) => labels.every(([k, v]) => s.labels[k!] === v) && (!state || s.state === state))
      return json(res, 200, list)
    }
    const sb = sandboxes.get(parts[2] ?? '')
    if (!sb) return fail(res, 404, 'not_found', `no sandbox "${parts[2]}"`)
    const rest = parts.slice(3).join('/')
    const path = url.searchParams.get('path') ?? ''
    const procs = processes.get(sb.id)!

    if (rest === '' && req.method === 'GET') return json(res, 200, sb)
    if (rest === '' && req.method === 'DELETE') {
      sandboxes.delete(sb.id)
      return noContent(res)
    }
    if (rest === 'timeout' && req.method === 'POST') {
      const body = await readJson(req)
      sb.expiresAt = new Date(Date.now() + (body.timeoutMs as number)).toISOString()
      return json(res, 200, sb)
    }
    if (rest === 'exec' && req.method === 'POST') {
      const body = await readJson(req)
      execBodies.push(body)
      const p = startProcess(sb.id, body)
      if (body.background) return json(res, 201, { pid: p.pid })
      return follow(p, req, res)
    }
    if (rest === 'processes' && req.method === 'GET') {
      const list: ProcessInfo[] = [...procs.values()].map((p) => ({ pid: p.pid, argv: p.argv, cwd: '/', startedAt: '2024-01-01T00:00:00.000Z', running: !p.result, result: p.result }))
      return json(res, 200, list)
    }
    if (parts[3] === 'processes' && parts[4]) {
      const p = procs.get(Number(parts[4]))
      if (!p) return fail(res, 404, 'not_found', `no process ${parts[4]} in sandbox ${sb.id}`)
      if (parts[5] === 'events' && req.method === 'GET') return follow(p, req, res)
      if (parts[5] === 'signal' && req.method === 'POST') {
        const { signal = 'SIGKILL' } = (await readJson(req)) as { signal?: string }
        p.killedWith = signal
        for (const w of [...p.killWaiters]) w(signal)
        for (const w of signalWaiters.splice(0)) w({ pid: p.pid, signal })
        return noContent(res)
      }
      if (parts[5] === 'stdin' && req.method === 'POST') {
        const body = (await readJson(req)) as { dataBase64?: string; close?: boolean }
        if (p.stdinClosed) return fail(res, 409, 'failed_precondition', `stdin of process ${p.pid} is closed; start it with keepStdin`)
        if (body.dataBase64) p.stdin.push(Buffer.from(body.dataBase64, 'base64'))
        if (body.close) p.stdinClosed = true
        for (const w of [...p.stdinWaiters]) w()
        return noContent(res)
      }
    }
    if (rest === 'files' && req.method === 'GET') {
      const data = files.get(path)
      if (!data) return fail(res, 404, 'not_found', `no file ${path}`)
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      // Large files go out in pieces, as a real server streams them.
      for (let i = 0; i < data.length; i += 1 << 20) {
        if (!res.write(data.subarray(i, i + (1 << 20)))) await once(res, 'drain')
      }
      return void res.end()
    }
    if (rest === 'files' && req.method === 'PUT' && path === '/dev/null') {
      // Counted, not kept: lets a test measure the client's memory alone.
      for await (const c of req) fake.discardedBytes += (c as Buffer).length
      return noContent(res)
    }
    if (rest === 'files' && req.method === 'PUT') {
      const chunks: Buffer[] = []
      let size = 0
      for await (const c of req) {
        size += (c as Buffer).length
        if (size > maxFileBytes) {
          res.setHeader('connection', 'close')
          return fail(res, 413, 'payload_too_large', `expected a file of at most ${maxFileBytes} bytes, got more`)
        }
        chunks.push(c as Buffer)
      }
      files.set(path, Buffer.concat(chunks))
      return noContent(res)
    }
    if (rest === 'fs/stat' && req.method === 'GET') {
      if (dirs.has(path)) return json(res, 200, entry(path, undefined, true))
      const data = files.get(path)
      return data ? json(res, 200, entry(path, data, false)) : fail(res, 404, 'not_found', `no such file or directory: ${path}`)
    }
    if (rest === 'fs/list' && req.method === 'GET') {
      const prefix = path.endsWith('/') ? path : `${path}/`
      const list = [...files.entries()].filter(([p]) => p.startsWith(prefix) && !p.slice(prefix.length).includes('/')).map(([p, d]) => entry(p, d, false))
      return json(res, 200, list)
    }
    if (rest === 'fs/mkdir' && req.method === 'POST') {
      dirs.add((await readJson(req)).path as string)
      return noContent(res)
    }
    if (rest === 'fs/remove' && req.method === 'POST') {
      const body = await readJson(req)
      if (!files.delete(body.path as string)) return fail(res, 404, 'not_found', `no such file or directory: ${String(body.path)}`)
      return noContent(res)
    }
    if (rest === 'fs/rename' && req.method === 'POST') {
      const body = await readJson(req)
      const data = files.get(body.from as string)
      if (!data) return fail(res, 404, 'not_found', `no such file or directory: ${String(body.from)}`)
      files.delete(body.from as string)
      files.set(body.to as string, data)
      return noContent(res)
    }
    return fail(res, 404, 'not_found', `no route ${req.method} ${url.pathname}`)
  }

  const server = createServer((req, res) => {
    open.add(res)
    res.on('close', () => {
      open.delete(res)
      if (open.size === 0) for (const w of [...idleWaiters]) w()
    })
    route(req, res).catch((err: unknown) => {
      if (!res.headersSent) fail(res, 500, 'internal', String(err))
      else res.destroy()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo

  const idle = (): Promise<void> => (open.size === 0 ? Promise.resolve() : new Promise((r) => idleWaiters.add(r)))
  const fake: FakeApi = {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    sandboxes,
    files,
    requests,
    execBodies,
    discardedBytes: 0,
    nextSignal: () => new Promise((r) => signalWaiters.push(r)),
    idle,
    async close() {
      // A client that ended or cancelled a response has its socket closed within a few turns of
      // the event loop; a leak never closes. The bound only turns a hang into a clear failure.
      let guard: NodeJS.Timeout | undefined
      const leaked = new Promise<never>((_, reject) => {
        guard = setTimeout(() => reject(new Error(`leaked responses still open: ${open.size}`)), 2000)
      })
      try {
        await Promise.race([idle(), leaked])
      } finally {
        clearTimeout(guard)
        server.closeAllConnections()
        server.close()
      }
    },
  }
  return fake
}
