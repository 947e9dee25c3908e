/**
 * The backend contract: one suite of cases that every RuntimeBackend runs on a real host. A
 * backend that cannot do a case lists it by name with its reason, so the gap is visible in the
 * test report instead of silently missing. Imported by tests only (it uses node:test).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { newId, SandstormError, type ProcessResult } from '../shared/index.js'
import type { ExecSpec, RuntimeBackend, RuntimeProcess, SandboxSpec, TerminalSize } from './backend.js'

/** What a backend brings to the contract. */
export interface BackendContractSetup {
  backend: RuntimeBackend
  /** A spec for a new sandbox with this id (root, limits, env). */
  spec(id: string): SandboxSpec
  /** Host paths or objects a sandbox leaves behind after destroy (expected none). @default none checked */
  leftovers?(id: string): Promise<string[]>
  /** Releases what the setup made (temp dirs). */
  close?(): Promise<void>
}

/** Options of runBackendContract. */
export interface BackendContractOptions {
  /** Cases this backend skips, by case name, with the reason. */
  skip?: Record<string, string>
}

/** Names of every case, so that skip lists can be checked against them. */
export const contractCases = [
  'create and destroy leave nothing',
  'a list while a create runs neither stalls nor breaks it',
  'exec passes argv, env and cwd',
  'exec reports the exit code',
  'exec keeps stdout and stderr apart',
  'exec runs as the given uid and gid',
  'exec feeds stdin',
  'timeout kills the whole process tree',
  'kill ends a background process',
  'files: write then read back',
  'files: list and stat',
  'files: mkdir, rename and remove',
  'files: a missing path is not_found',
  'pause and resume',
  'stats report usage',
  'pty: the command runs on a terminal of the size given',
  'pty: a resize shows in stty size and fires a WINCH trap',
  'pty: Ctrl-C stops a foreground command in a shell that goes on',
  'pty: Ctrl-D ends cat',
  'pty: a killed command leaves no process and no terminal',
  'pty: a command of another user owns its terminal',
] as const

/** Name of one contract case. */
export type ContractCase = (typeof contractCases)[number]

/**
 * Runs the contract against one backend. `makeBackend` returns the setup, or a string saying
 * why the whole suite cannot run here (no root, no template, no QEMU).
 */
export function runBackendContract(
  name: string,
  makeBackend: () => Promise<BackendContractSetup | string>,
  options: BackendContractOptions = {},
): void {
  const skips = options.skip ?? {}
  for (const key of Object.keys(skips)) {
    if (!(contractCases as readonly string[]).includes(key)) throw new Error(`backend contract ${name}: skip names an unknown case "${key}"`)
  }

  describe(`backend contract: ${name}`, () => {
    let setup: BackendContractSetup | null = null
    let skipAll: string | null = null
    // One sandbox shared by the cases that do not need their own (a VM boot is not free).
    let shared = ''

    before(async () => {
      const made = await makeBackend()
      if (typeof made === 'string') {
        skipAll = made
        return
      }
      setup = made
      shared = newId('sb')
      await setup.backend.create(setup.spec(shared))
    })

    after(async () => {
      if (!setup) return
      if (shared) await setup.backend.destroy(shared).catch(() => undefined)
      await setup.close?.()
    })

    const ctx = () => setup as BackendContractSetup
    const be = () => ctx().backend

    /** One case, skipped with its reason when the backend lists it. */
    const test = (caseName: ContractCase, fn: () => Promise<void>) => {
      const reason = skips[caseName]
      it(caseName, { skip: reason ?? false }, async (t) => {
        if (skipAll) return t.skip(skipAll)
        await fn()
      })
    }

    /** Runs a command to its end and collects its output. */
    async function run(id: string, argv: string[], extra: Partial<ExecSpec> = {}, stdin?: string) {
      let stdout = ''
      let stderr = ''
      const proc = await be().exec(
        id,
        { argv, env: {}, cwd: '/', uid: 0, gid: 0, ...extra },
        { onStdout: (c) => (stdout += Buffer.from(c).toString()), onStderr: (c) => (stderr += Buffer.from(c).toString()) },
      )
      if (stdin !== undefined) {
        await proc.writeStdin(Buffer.from(stdin))
        proc.closeStdin()
      }
      const result = await proc.result
      return { stdout, stderr, result }
    }

    const sh = (script: string, extra: Partial<ExecSpec> = {}) => run(shared, ['/bin/sh', '-c', script], extra)

    async function writeText(path: string, text: string) {
      await be().writeFile(shared, path, (async function* () {
        yield Buffer.from(text)
      })())
    }
    async function readText(path: string) {
      const chunks: Buffer[] = []
      for await (const c of be().readFile(shared, path)) chunks.push(Buffer.from(c))
      return Buffer.concat(chunks).toString()
    }
    async function assertCode(p: Promise<unknown>, code: string) {
      await assert.rejects(p, (e: unknown) => e instanceof SandstormError && e.code === code)
    }

    /** A command on a terminal, with what it printed so far and a wait for what it will print. */
    async function startPty(argv: string[], size: TerminalSize, extra: Partial<ExecSpec> = {}) {
      let output = ''
      const waiters: { pattern: RegExp; resolve: () => void }[] = []
      const heard = (c: Uint8Array) => {
        output += Buffer.from(c).toString()
        for (const w of waiters.splice(0)) if (w.pattern.test(output)) w.resolve()
        else waiters.push(w)
      }
      const proc = await be().exec(shared, { argv, env: {}, cwd: '/', uid: 0, gid: 0, pty: size, ...extra }, { onStdout: heard, onStderr: heard })
      /** Resolves once the output matches; fails (with the output) if the command ends first. */
      const waitFor = (pattern: RegExp) =>
        new Promise<void>((resolve, reject) => {
          if (pattern.test(output)) return resolve()
          waiters.push({ pattern, resolve })
          void proc.result.then(() => (pattern.test(output) ? resolve() : reject(new Error(`the command ended without printing ${pattern}; it printed ${JSON.stringify(output)}`))))
        })
      const type = (text: string) => proc.writeStdin(Buffer.from(text))
      return { proc, waitFor, type, output: () => output }
    }

    /** The terminals of the shared sandbox (its devpts), once none but `ptmx` is left, within a bound. */
    async function noTerminalsLeft() {
      let left = ''
      for (let i = 0; i < 100; i++) {
        left = (await sh('ls /dev/pts')).stdout.split(/\s+/).filter((n) => n && n !== 'ptmx').join(' ')
        if (left === '') return
        await new Promise((r) => setTimeout(r, 50))
      }
      assert.fail(`terminals left in the sandbox: ${left}`)
    }

    test('create and destroy leave nothing', async () => {
      const id = newId('sb')
      await be().create(ctx().spec(id))
      const listed = await be().list()
      assert.ok(listed.some((s) => s.id === id && s.status === 'running'), 'a new sandbox is listed as running')
      assert.equal((await run(id, ['/bin/true'])).result.exitCode, 0)
      await be().destroy(id)
      assert.ok(!(await be().list()).some((s) => s.id === id), 'a destroyed sandbox is no longer listed')
      await be().destroy(id)
      assert.deepEqual((await ctx().leftovers?.(id)) ?? [], [])
    })

    test('a list while a create runs neither stalls nor breaks it', async () => {
      // The agent's state watch lists every few seconds, whatever is starting. Lists that end
      // while the create still runs: the first one does, unless a list waits for the create. A
      // list is a run of runc, a create from a warm launcher is not: on a loaded host one list
      // has outlasted a whole create (148 ms), so a create may be tried again, at most 3 times.
      let overlapped = 0
      for (let attempt = 0; attempt < 3 && overlapped === 0; attempt++) {
        const id = newId('sb')
        let done = false
        const created = be().create(ctx().spec(id)).finally(() => (done = true))
        created.catch(() => undefined)
        while (!done) {
          await be().list()
          if (!done) overlapped++
          await new Promise((r) => setTimeout(r, 5))
        }
        try {
          await created
          assert.equal((await run(id, ['/bin/true'])).result.exitCode, 0)
        } finally {
          await be().destroy(id)
        }
      }
      assert.ok(overlapped > 0, 'no list ended before the create did, in 3 creates')
    })

    test('exec passes argv, env and cwd', async () => {
      const { stdout, result } = await run(shared, ['/bin/sh', '-c', 'printf "%s|%s|%s|" "$1" "$FOO" "$(pwd)"', 'argv0', 'a b'], { env: { FOO: 'bar baz' }, cwd: '/tmp' })
      assert.equal(result.exitCode, 0)
      assert.equal(stdout, 'a b|bar baz|/tmp|')
    })

    test('exec reports the exit code', async () => {
      assert.equal((await sh('exit 7')).result.exitCode, 7)
      assert.equal((await sh('true')).result.exitCode, 0)
    })

    test('exec keeps stdout and stderr apart', async () => {
      const { stdout, stderr } = await sh('echo out; echo err >&2; echo out2')
      assert.equal(stdout, 'out\nout2\n')
      assert.equal(stderr, 'err\n')
    })

    test('exec runs as the given uid and gid', async () => {
      const { stdout } = await sh('echo "$(id -u) $(id -g)"', { uid: 65534, gid: 65534 })
      assert.equal(stdout, '65534 65534\n')
    })

    test('exec feeds stdin', async () => {
      const { stdout } = await run(shared, ['/bin/cat'], {}, 'piped in')
      assert.equal(stdout, 'piped in')
    })

    test('timeout kills the whole process tree', async () => {
      const marker = `/tmp/tree-${Date.now()}`
      // The grandchild would write the marker after the timeout if it survived.
      const { result } = await sh(`(sleep 3; touch ${marker}) & sleep 30`, { timeoutMs: 1000 })
      assert.equal(result.timedOut, true)
      assert.notEqual(result.exitCode, 0)
      const alive = await sh(`pgrep -f "[s]leep 3" >/dev/null && echo alive || echo gone`)
      assert.equal(alive.stdout, 'gone\n')
    })

    test('kill ends a background process', async () => {
      const started: { resolve: () => void; promise: Promise<void> } = (() => {
        let resolve!: () => void
        const promise = new Promise<void>((r) => (resolve = r))
        return { resolve, promise }
      })()
      const proc: RuntimeProcess = await be().exec(
        shared,
        { argv: ['/bin/sh', '-c', 'echo up; exec sleep 60'], env: {}, cwd: '/', uid: 0, gid: 0 },
        { onStdout: () => started.resolve(), onStderr: () => undefined },
      )
      await started.promise
      await proc.kill('SIGKILL')
      const result: ProcessResult = await proc.result
      assert.equal(result.exitCode, 137)
      await proc.kill('SIGKILL')
    })

    test('files: write then read back', async () => {
      await writeText('/tmp/contract/deep/hello.txt', 'hello\nworld')
      assert.equal(await readText('/tmp/contract/deep/hello.txt'), 'hello\nworld')
      const big = 'x'.repeat(300_000)
      await writeText('/tmp/contract/big.txt', big)
      assert.equal((await readText('/tmp/contract/big.txt')).length, big.length)
    })

    test('files: list and stat', async () => {
      await writeText('/tmp/listing/a.txt', 'abc')
      await be().mkdir(shared, '/tmp/listing/sub', true)
      const entries = await be().listDir(shared, '/tmp/listing')
      const byName = new Map(entries.map((e) => [e.name, e]))
      assert.equal(byName.get('a.txt')?.type, 'file')
      assert.equal(byName.get('a.txt')?.size, 3)
      assert.equal(byName.get('sub')?.type, 'dir')
      const st = await be().stat(shared, '/tmp/listing/a.txt')
      assert.equal(st.type, 'file')
      assert.equal(st.size, 3)
      assert.equal(st.path, '/tmp/listing/a.txt')
    })

    test('files: mkdir, rename and remove', async () => {
      await be().mkdir(shared, '/tmp/ops/x/y', true)
      await assertCode(be().mkdir(shared, '/tmp/ops/x', false), 'already_exists')
      await writeText('/tmp/ops/x/y/f', '1')
      await be().rename(shared, '/tmp/ops/x/y/f', '/tmp/ops/g')
      assert.equal(await readText('/tmp/ops/g'), '1')
      await be().remove(shared, '/tmp/ops/g', false)
      await be().remove(shared, '/tmp/ops/x', true)
      assert.deepEqual(await be().listDir(shared, '/tmp/ops'), [])
    })

    test('files: a missing path is not_found', async () => {
      await assertCode(be().stat(shared, '/nope/missing'), 'not_found')
      await assertCode(be().listDir(shared, '/nope/missing'), 'not_found')
      await assertCode(readText('/nope/missing'), 'not_found')
      await assertCode(be().remove(shared, '/nope/missing', false), 'not_found')
    })

    test('pause and resume', async () => {
      await be().pause(shared)
      assert.equal((await be().list()).find((s) => s.id === shared)?.status, 'paused')
      await be().resume(shared)
      assert.equal((await be().list()).find((s) => s.id === shared)?.status, 'running')
      assert.equal((await sh('echo back')).stdout, 'back\n')
    })

    test('pty: the command runs on a terminal of the size given', async () => {
      const t = await startPty(['/bin/sh', '-c', 'tty; stty size; exit 3'], { cols: 91, rows: 17 })
      const result = await t.proc.result
      assert.equal(result.exitCode, 3)
      // The terminal turns each newline into CR LF, as any terminal does.
      assert.match(t.output(), /^\/dev\/pts\/\d+\r\n17 91\r\n$/)
      await noTerminalsLeft()
    })

    test('pty: a resize shows in stty size and fires a WINCH trap', async () => {
      // `wait` returns when a trapped signal comes, and the trap runs: no polling loop in the shell.
      const t = await startPty(['/bin/sh', '-c', 'trap "echo winch; stty size" WINCH; echo ready; sleep 1000 & while :; do wait; done'], { cols: 80, rows: 24 })
      try {
        await t.waitFor(/ready\r\n/)
        assert.ok(t.proc.resize, 'a process started with a pty can be resized')
        await t.proc.resize({ cols: 132, rows: 43 })
        await t.waitFor(/winch\r\n43 132\r\n/)
      } finally {
        await t.proc.kill('SIGKILL')
      }
      assert.equal((await t.proc.result).exitCode, 137)
      await assert.rejects(t.proc.resize!({ cols: 80, rows: 24 }), (e: unknown) => e instanceof SandstormError && e.code === 'failed_precondition')
      await noTerminalsLeft()
    })

    test('pty: Ctrl-C stops a foreground command in a shell that goes on', async () => {
      const t = await startPty(['/bin/sh', '-i'], { cols: 80, rows: 24 })
      try {
        // The quotes keep the echoed command line from matching what the command prints.
        await t.type(`sh -c 'echo st""arted; exec sleep 1000'\n`)
        await t.waitFor(/started\r\n/)
        await t.type('\x03')
        await t.type('echo $((6*7))-$?\n')
        // 130: the foreground command died of SIGINT, sent by the terminal's line discipline.
        await t.waitFor(/42-130\r\n/)
        await t.type('exit 5\n')
        assert.equal((await t.proc.result).exitCode, 5)
      } finally {
        await t.proc.kill('SIGKILL')
      }
      const left = await sh('pgrep -f "[s]leep 1000" >/dev/null && echo alive || echo gone')
      assert.equal(left.stdout, 'gone\n')
      await noTerminalsLeft()
    })

    test('pty: Ctrl-D ends cat', async () => {
      const t = await startPty(['cat'], { cols: 80, rows: 24 })
      try {
        await t.type('hello\n')
        // Once echoed by the terminal, once written back by cat.
        await t.waitFor(/hello\r\nhello\r\n/)
        await t.type('\x04')
        assert.equal((await t.proc.result).exitCode, 0)
      } finally {
        await t.proc.kill('SIGKILL')
      }
      await noTerminalsLeft()
    })

    test('pty: a killed command leaves no process and no terminal', async () => {
      const t = await startPty(['/bin/sh', '-c', 'sleep 1001 & sleep 1002 & echo up; wait'], { cols: 80, rows: 24 })
      await t.waitFor(/up\r\n/)
      await t.proc.kill('SIGKILL')
      const result = await t.proc.result
      assert.equal(result.exitCode, 137)
      const left = await sh('pgrep -f "[s]leep 100[12]" >/dev/null && echo alive || echo gone')
      assert.equal(left.stdout, 'gone\n')
      await noTerminalsLeft()
    })

    test('pty: a command of another user owns its terminal', async () => {
      const t = await startPty(['/bin/sh', '-c', 'id -u; stat -c %u "$(tty)"; echo written > "$(tty)"'], { cols: 80, rows: 24 }, { uid: 65534, gid: 65534 })
      const result = await t.proc.result
      assert.equal(result.exitCode, 0, t.output())
      assert.equal(t.output(), '65534\r\n65534\r\nwritten\r\n')
      await noTerminalsLeft()
    })

    test('stats report usage', async () => {
      await sh('i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done')
      const stats = await be().stats(shared)
      assert.ok(stats.memoryBytes > 0, `memory in use, got ${stats.memoryBytes}`)
      assert.ok(stats.cpuNanos > 0, `cpu time used, got ${stats.cpuNanos}`)
      assert.ok(stats.pids >= 1, `at least one process, got ${stats.pids}`)
    })
  })
}
