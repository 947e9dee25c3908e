/**
 * The unmodified `@e2b/code-interpreter` SDK against a real Sandstorm: sandboxes of the
 * `code-interpreter-v1` template, whose start command runs our kernel server on port 49999, reached
 * through ingress by E2B's routing headers. Results, errors, contexts, env vars, timeouts and a
 * sandbox killed mid-run; after each failure case, no kernel or shell is left over in the sandbox.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { InvalidArgumentError, NotFoundError, Sandbox, SandboxError, TimeoutError, type Context } from '@e2b/code-interpreter'
import { useStackForE2b } from './helpers/e2b-env.js'
import { skipReason, startStack, templatesDir, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const template = 'code-interpreter-v1'
const skip =
  skipReason() ??
  (existsSync(join(templatesDir, template, 'current', 'template.json')) ? null : `no ${template} template in ${templatesDir}: run scripts/setup.sh`)

const pngMagic = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

/** Every process's command line in the sandbox (read from /proc: no tool of the template needed). */
async function processes(sbx: Sandbox): Promise<string[]> {
  const r = await sbx.commands.run(`for p in /proc/[0-9]*; do [ -r "$p/cmdline" ] && tr '\\0' ' ' < "$p/cmdline" && echo; done`)
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean)
}

/** One python kernel per python context and one shell per bash context, nothing more; no `sleep` left running. */
async function assertNoStrays(sbx: Sandbox): Promise<void> {
  const [contexts, procs] = await Promise.all([sbx.listCodeContexts(), processes(sbx)])
  const kernels = procs.filter((p) => p.includes('ipykernel_launcher'))
  const shells = procs.filter((p) => p.startsWith('bash --noprofile --norc'))
  assert.equal(kernels.length, contexts.filter((c) => c.language === 'python').length, `python kernels beside contexts ${JSON.stringify(contexts)}:\n${kernels.join('\n')}`)
  assert.equal(shells.length, contexts.filter((c) => c.language === 'bash').length, `bash shells beside contexts ${JSON.stringify(contexts)}:\n${shells.join('\n')}`)
  for (const c of contexts) assert.equal(kernels.filter((k) => k.includes(c.id)).length, c.language === 'python' ? 1 : 0, `one kernel for context ${c.id}`)
  assert.deepEqual(procs.filter((p) => /^(\S*\/)?sleep /.test(p)), [], 'no sleep left by a stopped run')
}

/** Command lines of the host's processes that mention `text`. */
async function hostProcessesWith(text: string): Promise<string[]> {
  const found: string[] = []
  for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(text)) found.push(cmdline.replaceAll('\0', ' '))
  }
  return found
}

describe('@e2b/code-interpreter SDK', { skip: skip ?? false, timeout: 600_000 }, () => {
  let stack: Stack
  let sbx: Sandbox

  before(async () => {
    stack = await startStack()
    useStackForE2b(stack)
    sbx = await Sandbox.create(template)
  })
  after(async () => {
    await sbx?.kill().catch(() => undefined)
    await stack?.close()
  })

  test('1+1 is the main result, with the execution count', async () => {
    const ex = await sbx.runCode('1+1')
    assert.equal(ex.text, '2')
    assert.equal(ex.results.length, 1)
    assert.equal(ex.results[0]!.isMainResult, true)
    assert.equal(ex.error, undefined)
    assert.ok(typeof ex.executionCount === 'number' && ex.executionCount >= 1, `execution count ${ex.executionCount}`)
    assert.equal((await sbx.runCode('"a string"')).text, 'a string', 'a string result without its quotes, as E2B gives it')
  })

  test('stdout and stderr reach the callbacks and the logs', async () => {
    const out: string[] = []
    const err: string[] = []
    const ex = await sbx.runCode('import sys\nprint("to out")\nprint("to err", file=sys.stderr)', {
      onStdout: (m) => void out.push(m.line),
      onStderr: (m) => void err.push(m.line),
    })
    assert.equal(out.join(''), 'to out\n')
    assert.equal(err.join(''), 'to err\n')
    assert.deepEqual(ex.logs, { stdout: ['to out\n'], stderr: ['to err\n'] })
  })

  test('a matplotlib chart is a png result', async () => {
    const ex = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()')
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    const chart = ex.results.find((r) => r.png)
    assert.ok(chart, `a png among ${JSON.stringify(ex.results.map((r) => r.formats()))}`)
    assert.deepEqual(Buffer.from(chart.png!, 'base64').subarray(0, 8), pngMagic)
    assert.equal(chart.isMainResult, false)
    assert.match(chart.text ?? '', /Figure/)
  })

  test('an error has its name, value and a traceback without colour codes', async () => {
    const seen: string[] = []
    const ex = await sbx.runCode('def f():\n    raise ValueError("bad value")\nf()', { onError: (e) => void seen.push(e.name) })
    assert.ok(ex.error)
    assert.equal(ex.error.name, 'ValueError')
    assert.equal(ex.error.value, 'bad value')
    assert.match(ex.error.traceback, /ValueError: bad value/)
    assert.match(ex.error.traceback, /raise ValueError/)
    assert.doesNotMatch(ex.error.traceback, /\x1b/, 'no escape codes')
    assert.deepEqual(seen, ['ValueError'])
    assert.equal((await sbx.runCode('2*3')).text, '6', 'the context runs on after an error')
  })

  test('a dict is json, a DataFrame is data, html and markdown come as such', async () => {
    const dict = await sbx.runCode('{"a": 1, "b": [1, 2.5, None], "c": {"d": "e"}}')
    assert.deepEqual(dict.results[0]!.json, { a: 1, b: [1, 2.5, null], c: { d: 'e' } })

    const frame = await sbx.runCode('import pandas as pd\npd.DataFrame({"x": [1, 2], "y": ["a", "b"], "z": [0.5, float("nan")]})')
    assert.equal(frame.error, undefined, JSON.stringify(frame.error))
    const table = frame.results[0]!
    assert.deepEqual(table.data, { x: [1, 2], y: ['a', 'b'], z: [0.5, null] })
    assert.match(table.html ?? '', /<table/)
    assert.ok(table.formats().includes('data') && table.formats().includes('html'), table.formats().join())

    const shown = await sbx.runCode('from IPython.display import HTML, Markdown, display\ndisplay(HTML("<b>bold</b>"))\nMarkdown("# Title")')
    assert.equal(shown.results.length, 2)
    assert.equal(shown.results[0]!.html, '<b>bold</b>')
    assert.equal(shown.results[0]!.isMainResult, false, 'a display() call is not the main result')
    assert.equal(shown.results[1]!.markdown, '# Title')
    assert.equal(shown.results[1]!.isMainResult, true)
  })

  test('two contexts run in parallel; runs on one context queue in order', async () => {
    const [a, b] = await Promise.all([sbx.createCodeContext(), sbx.createCodeContext()])
    const tag = `${Date.now()}`
    // Each waits for the other's file: only runs at the same time finish.
    const meet = (me: string, other: string) =>
      `import os, time\nopen("/tmp/${tag}-${me}", "w").close()\nwhile not os.path.exists("/tmp/${tag}-${other}"):\n    time.sleep(0.01)\n"met"`
    const [ra, rb] = await Promise.all([sbx.runCode(meet('a', 'b'), { context: a, timeoutMs: 30_000 }), sbx.runCode(meet('b', 'a'), { context: b, timeoutMs: 30_000 })])
    assert.equal(ra.text, 'met')
    assert.equal(rb.text, 'met')

    const first = sbx.runCode('import time\ntime.sleep(0.5)\nqueued = 1', { context: a })
    const second = sbx.runCode('queued + 1', { context: a })
    await first
    assert.equal((await second).text, '2', 'the second run waited for the first')
    await Promise.all([sbx.removeCodeContext(a), sbx.removeCodeContext(b)])
  })

  test('a run past its timeoutMs is stopped; the next run on that context finds its state', async () => {
    const ctx = await sbx.createCodeContext()
    await sbx.runCode('kept = 5', { context: ctx })
    await assert.rejects(sbx.runCode('import time\nwhile True:\n    time.sleep(0.05)', { context: ctx, timeoutMs: 1000 }), TimeoutError)
    const next = await sbx.runCode('kept', { context: ctx })
    assert.equal(next.text, '5', `the state after the stop: ${JSON.stringify(next.error ?? next.logs)}`)
    assert.equal((await sbx.runCode('import sys\nsys.last_type.__name__', { context: ctx })).text, 'KeyboardInterrupt', 'the run was interrupted')
    await assertNoStrays(sbx)

    // Code that swallows the interrupt: its kernel is restarted, so the context is not stuck.
    await assert.rejects(sbx.runCode('import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass', { context: ctx, timeoutMs: 1000 }), TimeoutError)
    const after = await sbx.runCode('"alive"', { context: ctx, timeoutMs: 60_000 })
    assert.equal(after.text, 'alive')
    await assertNoStrays(sbx)
    await sbx.removeCodeContext(ctx)
  })

  test('a bash run past its timeoutMs is stopped; the shell keeps its state', async () => {
    const ctx = await sbx.createCodeContext({ language: 'bash' })
    await sbx.runCode('KEPT=yes', { context: ctx })
    await assert.rejects(sbx.runCode('echo started; sleep 60; echo never', { context: ctx, timeoutMs: 1000 }), TimeoutError)
    assert.deepEqual((await sbx.runCode('echo "$KEPT"', { context: ctx })).logs.stdout, ['yes\n'])
    await assertNoStrays(sbx)
    await sbx.removeCodeContext(ctx)
  })

  test('restartCodeContext clears the state and ends the run in progress', async () => {
    const ctx = await sbx.createCodeContext()
    await sbx.runCode('gone_after_restart = 7', { context: ctx })
    assert.equal((await sbx.runCode('gone_after_restart', { context: ctx })).text, '7')
    await sbx.restartCodeContext(ctx)
    const ex = await sbx.runCode('gone_after_restart', { context: ctx })
    assert.equal(ex.error?.name, 'NameError')

    let started!: () => void
    const running = new Promise<void>((resolve) => (started = resolve))
    const long = sbx.runCode('import time\nprint("started", flush=True)\ntime.sleep(120)', { context: ctx, onStdout: () => started() })
    const queued = sbx.runCode('"after the restart"', { context: ctx })
    await running
    await sbx.restartCodeContext(ctx)
    assert.equal((await long).error?.name, 'ContextRestarting')
    assert.equal((await queued).text, 'after the restart', 'a run queued behind runs on the new kernel')
    await assertNoStrays(sbx)
    await sbx.removeCodeContext(ctx)
  })

  test('per-run envs are set for that run and undone after it', async () => {
    const read = 'import os\nprint(os.environ.get("CALL_VAR"))'
    assert.deepEqual((await sbx.runCode(read, { envs: { CALL_VAR: `it's "quoted"` } })).logs.stdout, [`it's "quoted"\n`])
    assert.deepEqual((await sbx.runCode(read)).logs.stdout, ['None\n'])

    await sbx.runCode('import os\nos.environ["KEEP_VAR"] = "before"')
    assert.equal((await sbx.runCode('os.environ["KEEP_VAR"]', { envs: { KEEP_VAR: 'during' } })).text, 'during')
    assert.equal((await sbx.runCode('os.environ["KEEP_VAR"]')).text, 'before', 'the value from before the run is back')

    const bash = await sbx.runCode('echo "[$CALL_VAR]"', { language: 'bash', envs: { CALL_VAR: 'a b' } })
    assert.deepEqual(bash.logs.stdout, ['[a b]\n'])
    assert.deepEqual((await sbx.runCode('echo "[$CALL_VAR]"', { language: 'bash' })).logs.stdout, ['[]\n'])
  })

  test('a context has its cwd', async () => {
    const py = await sbx.createCodeContext({ cwd: '/tmp' })
    assert.equal(py.cwd, '/tmp')
    assert.equal((await sbx.runCode('import os\nos.getcwd()', { context: py })).text, '/tmp')
    const sh = await sbx.createCodeContext({ language: 'bash', cwd: '/etc' })
    assert.deepEqual((await sbx.runCode('pwd', { context: sh })).logs.stdout, ['/etc\n'])
    assert.equal((await sbx.runCode('import os\nos.getcwd()')).text, '/home/user', 'the default context starts in the home')
    await Promise.all([sbx.removeCodeContext(py), sbx.removeCodeContext(sh)])
  })

  test('bash: state between runs, stderr, a non-zero exit as an error', async () => {
    const ctx = await sbx.createCodeContext({ language: 'bash' })
    assert.equal(ctx.language, 'bash')
    const first = await sbx.runCode('N=21\necho $((N * 2))\necho warn >&2', { context: ctx })
    assert.deepEqual(first.logs, { stdout: ['42\n'], stderr: ['warn\n'] })
    assert.equal(first.error, undefined)
    assert.deepEqual((await sbx.runCode('echo $N; whoami', { context: ctx })).logs.stdout, ['21\nuser\n'])
    const failed = await sbx.runCode('echo before; false', { context: ctx })
    assert.equal(failed.error?.value, '1')
    assert.deepEqual(failed.logs.stdout, ['before\n'])
    assert.deepEqual((await sbx.runCode('echo by language', { language: 'bash' })).logs.stdout, ['by language\n'])
    await sbx.removeCodeContext(ctx)
  })

  test('contexts are listed and removed; a removed one is not found', async () => {
    const ctx = await sbx.createCodeContext({ language: 'python' })
    const listed = await sbx.listCodeContexts()
    assert.ok(listed.some((c) => c.id === ctx.id && c.language === 'python'), JSON.stringify(listed))
    assert.ok(listed.some((c) => c.language === 'python' && c.id !== ctx.id), 'the default python context is listed too')
    await sbx.removeCodeContext(ctx.id)
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
    await assert.rejects(sbx.runCode('1', { context: ctx }), NotFoundError)
    await assertNoStrays(sbx)
  })

  test('an unknown context is NotFoundError; a context with a language is InvalidArgumentError; an unserved language is refused', async () => {
    const unknown: Context = { id: 'no-such-context', language: 'python', cwd: '/home/user' }
    await assert.rejects(sbx.runCode('1', { context: unknown }), (err: unknown) => err instanceof NotFoundError && /no-such-context/.test(err.message))
    await assert.rejects(sbx.restartCodeContext(unknown), NotFoundError)
    await assert.rejects(sbx.removeCodeContext(unknown), NotFoundError)
    const real = await sbx.createCodeContext()
    // Not a type the SDK's signature allows: what it does at run time when given both is the point.
    await assert.rejects(sbx.runCode('1', { context: real, language: 'python' } as never), InvalidArgumentError)
    await sbx.removeCodeContext(real)
    await assert.rejects(sbx.runCode('1', { language: 'javascript' }), (err: unknown) => err instanceof SandboxError && /400/.test(err.message))
    // The SDK's error for a refused context says only the status (the body, which names the field, is dropped).
    await assert.rejects(sbx.createCodeContext({ language: 'r' }), (err: unknown) => err instanceof SandboxError && /^400\b/.test(err.message))
    await assertNoStrays(sbx)
  })

  test('bad requests are 400s that name the field', async () => {
    const post = (body: string) =>
      fetch(`${process.env.E2B_SANDBOX_URL}/execute`, { method: 'POST', headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49999' }, body })
    for (const [body, field] of [
      ['{', 'body'],
      ['[1]', 'body'],
      ['{"code": 1}', 'code'],
      ['{"code": "1", "env_vars": {"A": 1}}', 'env_vars.A'],
      ['{"code": "1", "context_id": "x", "language": "python"}', 'context_id'],
      ['{"code": "1", "language": "cobol"}', 'language'],
    ] as const) {
      const res = await post(body)
      assert.equal(res.status, 400, body)
      assert.match(await res.text(), new RegExp(`^${field.replace('.', '\\.')}\\b`), body)
    }
  })

  test('sandbox envs from create are in every context', async () => {
    const withEnv = await Sandbox.create(template, { envs: { SANDBOX_VAR: 'from create' } })
    try {
      assert.equal((await withEnv.runCode('import os\nos.environ["SANDBOX_VAR"]')).text, 'from create')
      assert.deepEqual((await withEnv.runCode('echo "$SANDBOX_VAR"', { language: 'bash' })).logs.stdout, ['from create\n'])
    } finally {
      await withEnv.kill()
    }
  })

  test('a sandbox killed during a run: the run fails with TimeoutError, as against E2B, and leaves no kernel', async () => {
    const doomed = await Sandbox.create(template)
    const [defaultContext] = await doomed.listCodeContexts()
    assert.ok(defaultContext)
    let started!: () => void
    const running = new Promise<void>((resolve) => (started = resolve))
    const run = doomed.runCode('import time\nprint("started", flush=True)\ntime.sleep(120)', { onStdout: () => started(), timeoutMs: 100_000 })
    run.catch(() => undefined)
    await running
    assert.equal((await hostProcessesWith(defaultContext.id)).length, 1, "the host sees the sandbox's kernel before the kill")
    await Sandbox.kill(doomed.sandboxId)
    await assert.rejects(run, (err: unknown) => err instanceof TimeoutError && /killed/.test(err.message))
    await until('no process of the sandbox left on the host', async () => (await hostProcessesWith(defaultContext.id)).length === 0)
  })
})
