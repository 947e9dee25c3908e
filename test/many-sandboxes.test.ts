/**
 * 100 runc sandboxes at once, each running commands in a loop while all the others do: every
 * command answers right, in its own sandbox, without an error; then all are destroyed and the
 * host keeps nothing of them (container, cgroups, processes, mounts, network namespace, veth,
 * nftables chain, init).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir, readFile, readlink, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { Sandbox } from '@sandstorm/sdk'
import { leftoversOf } from './helpers/leftovers.js'
import { until } from './helpers/until.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
const sandboxCount = 100
const execsEach = 12
/** Creates and destroys in flight at once: enough to overlap, few enough not to thrash 2 cores. */
const parallelLifecycle = 4

/** Runs `fn` for every item, `limit` at a time; the first failure rejects once the calls in flight are done. */
async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const failures: unknown[] = []
  const worker = async () => {
    while (failures.length === 0 && next < items.length) await fn(items[next++]!).catch((err: unknown) => failures.push(err))
  }
  await Promise.all(Array.from({ length: limit }, worker))
  if (failures.length > 0) throw failures[0]
}

/** The name under /run/netns of each sandbox's network namespace, found from its processes' cgroup. */
async function namespacesOf(ids: string[]): Promise<Map<string, string>> {
  const byInode = new Map<number, string>()
  for (const name of await readdir('/run/netns')) {
    const ino = (await stat(join('/run/netns', name)).catch(() => undefined))?.ino
    if (ino !== undefined) byInode.set(ino, name)
  }
  const names = new Map<string, string>()
  for (const id of ids) {
    const pid = (await readFile(join('/sys/fs/cgroup/pids/sandstorm', id, 'cgroup.procs'), 'utf8')).split('\n').find((l) => l !== '')
    const inode = Number(/^net:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/ns/net`))?.[1])
    const name = byInode.get(inode)
    assert.ok(name, `sandbox ${id} runs in a namespace under /run/netns`)
    names.set(id, name)
  }
  return names
}

/** What the host holds of these network slots (`sbn-<tag>-<slot>`): namespaces, veths, nftables chains. */
async function slotsOnHost(namespaces: string[], dataDir: string): Promise<string[]> {
  const tag = createHash('sha256').update(dataDir).digest('hex').slice(0, 6)
  const slots = namespaces.map((n) => n.split('-')[2]!)
  const present = new Set(await readdir('/run/netns').catch(() => [] as string[]))
  const links = new Set((await execa('ip', ['-o', 'link', 'show'])).stdout.split('\n').map((l) => /^\d+: (sbv[a-z0-9]+)[@:]/.exec(l)?.[1]))
  const table = (await execa('nft', ['list', 'table', 'inet', `sandstorm_${tag}`], { reject: false })).stdout
  const found: string[] = []
  for (const [i, slot] of slots.entries()) {
    if (present.has(namespaces[i]!)) found.push(`netns ${namespaces[i]}`)
    if (links.has(`sbv${slot}`)) found.push(`veth sbv${slot}`)
    if (table.includes(`chain e_${slot} `)) found.push(`nftables chain e_${slot}`)
  }
  return found
}

describe(`${sandboxCount} sandboxes running commands at once`, { skip, timeout: 600_000 }, () => {
  let stack: Stack
  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it(`each runs ${execsEach} commands in a loop, all right; then all go, leaving nothing`, async () => {
    const sandboxes: Sandbox[] = []
    // Small limits: 100 of them at 64 MiB fit any test host; the default network (a namespace each).
    await eachLimit(
      Array.from({ length: sandboxCount }, (_, k) => k),
      parallelLifecycle,
      async () => void sandboxes.push(await Sandbox.create('debian', { ...stack.conn, memoryMiB: 64, cpus: 0.25, labels: { test: 'many' }, timeoutMs: 600_000 })),
    )
    assert.equal((await Sandbox.list({ ...stack.conn, labels: { test: 'many' }, state: 'running' })).length, sandboxCount)

    // All loops at once. Each command appends to a file of its sandbox and counts its lines, so an
    // answer from the wrong sandbox, a lost command or one run twice shows in the count.
    const wrong: string[] = []
    await Promise.all(
      sandboxes.map(async (sbx, k) => {
        for (let i = 0; i < execsEach; i++) {
          const r = await sbx.commands.run(['sh', '-c', 'echo "$1" >> /tmp/loop && wc -l < /tmp/loop', 'sh', `${k}.${i}`])
          if (r.stdout !== `${i + 1}\n` || r.stderr !== '') wrong.push(`${sbx.sandboxId} #${i}: stdout ${JSON.stringify(r.stdout)} stderr ${JSON.stringify(r.stderr)}`)
        }
        const log = await sbx.files.read('/tmp/loop')
        const expected = Array.from({ length: execsEach }, (_, i) => `${k}.${i}\n`).join('')
        if (log !== expected) wrong.push(`${sbx.sandboxId}: /tmp/loop is ${JSON.stringify(log)}`)
      }),
    )
    assert.deepEqual(wrong, [])
    // A namespace each, with its veth and its chain: what must go with them.
    const namespaces = await namespacesOf(sandboxes.map((s) => s.sandboxId))
    assert.equal(new Set(namespaces.values()).size, sandboxCount, 'a namespace of its own each')
    assert.equal((await slotsOnHost([...namespaces.values()], stack.dataDir)).length, 3 * sandboxCount, 'a namespace, a veth and a chain each while they run')

    await eachLimit(sandboxes, parallelLifecycle, async (sbx) => assert.equal(await sbx.kill(), true, `kill ${sbx.sandboxId}`))
    assert.deepEqual(await Sandbox.list({ ...stack.conn, labels: { test: 'many' } }), [])
    const left: string[] = []
    for (const sbx of sandboxes) left.push(...(await leftoversOf(stack.dataDir, sbx.sandboxId)))
    assert.deepEqual(left, [])
    // Namespaces and chains go with the kill; a veth goes with its namespace and is deleted behind
    // the kill, soon after (that it is down meanwhile: network-lifecycle.test.ts).
    assert.deepEqual((await slotsOnHost([...namespaces.values()], stack.dataDir)).filter((l) => !l.startsWith('veth ')), [])
    await until('the veths of the killed sandboxes gone', async () => {
      assert.deepEqual(await slotsOnHost([...namespaces.values()], stack.dataDir), [])
      return true
    })
    const ids = new Set(sandboxes.map((s) => s.sandboxId))
    const inits = (await execa('lsns', ['-t', 'net', '-o', 'COMMAND', '--noheadings'])).stdout.split('\n').filter((c) => ids.has(/sandstorm-init-(\S+)$/.exec(c)?.[1] ?? ''))
    assert.deepEqual(inits, [], 'sandbox inits still running')
  })
})
