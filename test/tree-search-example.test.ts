/**
 * examples/tree-search, run as a user runs it (its built script, the connection from the
 * environment): it finds the fix by forking, snapshotting and restoring, as the server's own
 * request counts confirm, and leaves no sandbox or snapshot behind, also when interrupted.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { listSnapshots, Sandbox } from '@sandstorm/sdk'
import { sandboxIdsOnDisk } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
/** dist/test/tree-search-example.test.js -> dist/examples/tree-search/main.js */
const example = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'tree-search', 'main.js')

/** Starts the example against the stack; `exited` resolves with its exit code and output. */
function startExample(stack: Stack) {
  const child = spawn(process.execPath, [example], {
    env: { ...process.env, SANDSTORM_URL: stack.conn.apiUrl, SANDSTORM_API_KEY: stack.conn.apiKey },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const out = { stdout: '', stderr: '' }
  child.stdout.on('data', (d: Buffer) => (out.stdout += d))
  child.stderr.on('data', (d: Buffer) => (out.stderr += d))
  const exited = once(child, 'close').then(([code]) => ({ code: code as number | null, ...out }))
  return { child, out, exited }
}

/** Successful answers per route, from the server's /metrics. */
async function answered(stack: Stack): Promise<Map<string, number>> {
  const res = await fetch(`${stack.server.url}/metrics`, { headers: { authorization: `Bearer ${stack.server.apiKey}` } })
  const counts = new Map<string, number>()
  for (const m of (await res.text()).matchAll(/^sandstorm_http_requests_total\{route="([^"]+)",status="(2\d\d)"\} (\d+)$/gm)) {
    counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + Number(m[3]))
  }
  return counts
}

/** Asserts that the stack holds no sandbox and no snapshot, in the catalog or on disk. */
async function assertNothingLeft(stack: Stack): Promise<void> {
  assert.deepEqual(await Sandbox.list(stack.conn), [])
  assert.deepEqual(await listSnapshots(stack.conn), [])
  assert.deepEqual(await sandboxIdsOnDisk(stack.dataDir), [])
}

describe('examples/tree-search', { skip, timeout: 600_000 }, () => {
  let stack: Stack
  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('repairs pages.py through forks, snapshots and a restore, and removes all it made', async () => {
    const before = await answered(stack)
    const { code, stdout, stderr } = await startExample(stack).exited
    assert.equal(code, 0, `exit ${code}\n${stdout}\n${stderr}`)
    // The fix, as diff -u printed it in the working sandbox.
    assert.match(stdout, /^solved at n\d+: 8\/8 tests pass/m)
    assert.match(stdout, /^\+ {4}return \(total \+ per_page - 1\) \/\/ per_page$/m)
    assert.match(stdout, /^\+ {4}start = \(number - 1\) \* per_page$/m)
    // The tree: a branch that looked best first and dead-ended, then the backtrack to the root.
    assert.match(stdout, /^n0 \(the module as it came\) {2}3\/8 {2}\[snap-[a-z0-9]+, forked 7, restored to\]$/m)
    assert.match(stdout, /^├─ n\d+ return \(total - 1\) \/\/ per_page {2}5\/8 {2}\[snap-[a-z0-9]+, forked \d, dead end\]$/m)
    const summary = /^(\d+) nodes, (\d+) forked sandboxes, (\d+) snapshots, (\d+) restores$/m.exec(stdout)
    assert.ok(summary, stdout)
    const [forked, snapshots, restores] = [Number(summary[2]), Number(summary[3]), Number(summary[4])]
    // What it says it did is what the server answered.
    const after = await answered(stack)
    const delta = (route: string) => (after.get(route) ?? 0) - (before.get(route) ?? 0)
    assert.equal(delta('POST /v1/sandboxes/:id/snapshots'), snapshots)
    assert.equal(delta('POST /v1/sandboxes/:id/restore'), restores)
    assert.ok(restores >= 1, 'at least one backtrack')
    assert.ok(delta('POST /v1/snapshots/:id/fork') >= 2, 'forked at two nodes at least')
    assert.equal(forked + 1, delta('DELETE /v1/sandboxes/:id'), 'every fork and the working sandbox killed')
    assert.match(stdout, new RegExp(`^cleanup: removed every sandbox and ${snapshots} snapshots`, 'm'))
    await assertNothingLeft(stack)
  })

  it('cleans up after a Ctrl-C in the middle of the search', async () => {
    const run = startExample(stack)
    // Once the first scouts are out: sandboxes and a snapshot exist.
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (/^ {2}fork \d+ sandboxes/m.test(run.out.stdout)) {
          run.child.stdout.off('data', check)
          resolve()
        }
      }
      run.child.stdout.on('data', check)
      run.exited.then(() => reject(new Error(`the example ended before it forked:\n${run.out.stdout}\n${run.out.stderr}`)), reject)
    })
    run.child.kill('SIGINT')
    const { code, stdout, stderr } = await run.exited
    assert.equal(code, 1, `exit ${code}\n${stdout}\n${stderr}`)
    assert.match(stderr, /interrupted: cleaning up/)
    assert.match(stdout, /^cleanup: removed every sandbox and \d+ snapshots/m)
    await assertNothingLeft(stack)
  })
})
