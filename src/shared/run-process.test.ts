import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { SandstormError } from './errors.js'
import { complaintOf, endError, runOrThrow, runProcess } from './run-process.js'

describe('runProcess', () => {
  it('gives the output and exit 0 of a program that succeeds', async () => {
    const result = await runProcess('sh', ['-c', 'echo out; echo err >&2'])
    assert.deepEqual([result.exitCode, result.signal, result.stdout, result.stderr, result.timedOut, result.canceled, result.failure], [0, null, 'out\n', 'err\n', false, false, undefined])
    assert.ok(result.durationMs > 0)
  })

  it('gives the exit code and complaint of one that fails', async () => {
    const result = await runProcess('sh', ['-c', 'echo first >&2; echo second >&2; echo third >&2; echo fourth >&2; exit 3'])
    assert.equal(result.exitCode, 3)
    assert.equal(complaintOf(result), 'first; second; third')
    assert.equal(complaintOf(result, 1), 'first')
  })

  it('says that a program is not there, without throwing', async () => {
    const result = await runProcess('/nonexistent/tool', [])
    assert.equal(result.exitCode, null)
    assert.match(result.failure ?? '', /could not run \/nonexistent\/tool: .*ENOENT/)
    assert.equal(result.startErrno, 'ENOENT')
  })

  it('says what signal ended one', async () => {
    const result = await runProcess('sh', ['-c', 'kill -SEGV $$'])
    assert.deepEqual([result.exitCode, result.signal], [null, 'SIGSEGV'])
    assert.match(endError(result, 'a crash')!.message, /^a crash failed: expected exit 0, got killed by SIGSEGV/)
  })

  it('kills one that is canceled, and one that runs past its timeout', async () => {
    const controller = new AbortController()
    const running = runProcess('sleep', ['30'], { signal: controller.signal })
    controller.abort()
    const canceled = await running
    assert.deepEqual([canceled.canceled, canceled.timedOut, canceled.exitCode, canceled.signal], [true, false, null, 'SIGKILL'])
    assert.equal(endError(canceled, 'sleeping')?.code, 'canceled')
    const late = await runProcess('sleep', ['30'], { timeoutMs: 50 })
    assert.deepEqual([late.canceled, late.timedOut, late.exitCode], [false, true, null])
    assert.equal(endError(late, 'sleeping')?.code, 'deadline_exceeded')
    const before = await runProcess('sleep', ['30'], { signal: AbortSignal.abort() })
    assert.equal(before.canceled, true)
  })

  it('kills the whole group of one that runs in its own, children included', async () => {
    const controller = new AbortController()
    let child = 0
    const running = runProcess('sh', ['-c', 'sleep 30 & echo $!; wait'], { ownGroup: true, signal: controller.signal, onLine: (line) => ((child = Number(line)), controller.abort()) })
    const result = await running
    assert.equal(result.canceled, true)
    assert.ok(child > 0)
    // Killed with the group: gone, or dead and not yet reaped (a zombie), not asleep.
    assert.ok(['gone', 'Z'].includes(processState(child)), processState(child))
  })

  it('closes stdin at once, or writes the input to it', async () => {
    assert.deepEqual(((await runProcess('cat', [])).stdout), '')
    assert.deepEqual(((await runProcess('cat', [], { input: 'fed' })).stdout), 'fed')
    const bytes = await runProcess('cat', [], { input: new Uint8Array([0, 255, 1]), encoding: 'buffer' })
    assert.deepEqual([...bytes.stdout], [0, 255, 1])
    // A program that reads none of a large input and exits: not a failure of the run.
    assert.equal((await runProcess('true', [], { input: Buffer.alloc(8 * 1024 * 1024) })).exitCode, 0)
  })

  it('passes the environment, added to this one or instead of it, and the cwd', async () => {
    const added = await runProcess('sh', ['-c', 'echo "$ADDED:$PATH:$PWD"'], { env: { ADDED: 'a' }, cwd: '/tmp' })
    assert.equal(added.stdout, `a:${process.env.PATH}:/tmp\n`)
    const replaced = await runProcess('/bin/sh', ['-c', 'echo "$ADDED:${PATH-unset}"'], { env: { ADDED: 'b' }, replaceEnv: true })
    assert.match(replaced.stdout, /^b:/)
    assert.doesNotMatch(replaced.stdout, new RegExp(process.env.PATH!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
  })

  it('kills one that prints past the bound, and says so', async () => {
    const result = await runProcess('sh', ['-c', 'head -c 3000000 /dev/zero; sleep 30'], { maxOutputBytes: 1_000_000 })
    assert.equal(result.exitCode, null)
    assert.equal(result.failure, 'stdout past 1000000 bytes')
  })

  it('hands the lines to onLine, whole across chunks (a character split between two too), and keeps none', async () => {
    const lines: string[] = []
    // "é" is two bytes; printf writes them in two writes, a pause between.
    const result = await runProcess('sh', ['-c', "printf 'one\\ntw'; sleep 0.05; printf 'o\\n\\303'; sleep 0.05; printf '\\251\\nlast'; echo err >&2"], { onLine: (l) => lines.push(l) })
    assert.deepEqual(lines.sort(), ['err', 'last', 'one', 'two', 'é'].sort())
    assert.deepEqual([result.stdout, result.stderr], ['', ''])
  })
})

describe('runOrThrow', () => {
  it('gives the result of a run that exited 0, and an error naming what it was for otherwise', async () => {
    assert.equal((await runOrThrow('echo', ['hi'], 'saying hi')).stdout, 'hi\n')
    await assert.rejects(runOrThrow('sh', ['-c', 'echo no such thing >&2; exit 2'], 'looking'), (err: unknown) => {
      assert.ok(err instanceof SandstormError)
      assert.equal(err.code, 'internal')
      assert.equal(err.message, 'looking failed: expected exit 0, got exit 2: no such thing')
      return true
    })
  })
})

/** The state letter of a process (`S`, `Z`, ...), or `gone`. */
function processState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]!
  } catch {
    return 'gone'
  }
}
