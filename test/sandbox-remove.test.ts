/**
 * DELETE /v1/sandboxes/:id?wait=false: answered 202 once the sandbox is marked for removal, the
 * destroy going on under the server. The sandbox still goes entirely (runc container, cgroups,
 * processes, mounts, network namespace), also when the server closes right after the answer.
 */
import assert from 'node:assert/strict'
import { readdir, readFile, readlink, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from '@sandstorm/sdk'
import { leftoversOf } from './helpers/leftovers.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** A DELETE of the sandbox route with `query`, answered as status and JSON body (if any). */
async function remove(stack: Stack, id: string, query: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${stack.server.url}/v1/sandboxes/${id}${query}`, { method: 'DELETE', headers: { authorization: `Bearer ${stack.server.apiKey}` } })
  const text = await res.text()
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
}

/** The network namespace of a sandbox (by its processes' cgroup), as its inode and its name under /run/netns. */
async function netnsOf(id: string): Promise<{ inode: number; name: string }> {
  const procs = await readFile(join('/sys/fs/cgroup/pids/sandstorm', id, 'cgroup.procs'), 'utf8')
  const pid = procs.split('\n').find((l) => l !== '')
  assert.ok(pid, `a process in sandbox ${id}`)
  const inode = Number(/^net:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/ns/net`))?.[1])
  const name = await namedNetns(inode)
  assert.ok(name, `sandbox ${id} runs in a namespace under /run/netns (inode ${inode})`)
  return { inode, name }
}

/** The name under /run/netns of the namespace with this inode, if one is there. */
async function namedNetns(inode: number): Promise<string | undefined> {
  for (const name of await readdir('/run/netns').catch(() => [] as string[])) {
    if ((await stat(join('/run/netns', name)).catch(() => undefined))?.ino === inode) return name
  }
  return undefined
}

/** Host processes still in the namespace with this inode. */
async function processesIn(inode: number): Promise<number[]> {
  const pids: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    if ((await readlink(`/proc/${name}/ns/net`).catch(() => '')) === `net:[${inode}]`) pids.push(Number(name))
  }
  return pids
}

/** Everything of a removed sandbox still on the host: what leftoversOf finds, its namespace and the processes in it. */
async function remainsOf(stack: Stack, id: string, netns: { inode: number; name: string }): Promise<string[]> {
  const found = await leftoversOf(stack.dataDir, id)
  // By its name and its inode both: a namespace made since (a spare network slot) may have been
  // given the inode the sandbox's freed, under a name of its own.
  if ((await stat(join('/run/netns', netns.name)).catch(() => undefined))?.ino === netns.inode) found.push(`netns ${netns.name}`)
  for (const pid of await processesIn(netns.inode)) found.push(`process ${pid} in its netns`)
  return found
}

describe('DELETE /v1/sandboxes/:id?wait=false', { skip }, () => {
  let stack: Stack
  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('answers 202, then the sandbox leaves the list and the host: container, cgroups, mounts, netns', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, labels: { remove: 'later' } })
    await sbx.commands.run('sleep 600 >/dev/null 2>&1 &')
    const netns = await netnsOf(sbx.sandboxId)
    assert.deepEqual(await remove(stack, sbx.sandboxId, '?wait=false'), { status: 202, body: undefined })
    await until('the sandbox gone from the list', async () => (await Sandbox.list({ ...stack.conn, labels: { remove: 'later' } })).length === 0)
    // The catalog lets go of it only once the agent destroyed it.
    assert.deepEqual(await remainsOf(stack, sbx.sandboxId, netns), [])
    assert.equal((await remove(stack, sbx.sandboxId, '?wait=false')).status, 404)
  })

  it('the SDK: kill({ wait: false }) resolves true at once, the sandbox then goes; false for an unknown one', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, labels: { remove: 'sdk' } })
    const netns = await netnsOf(sbx.sandboxId)
    assert.equal(await sbx.kill({ wait: false }), true)
    await until('the sandbox gone from the list', async () => (await Sandbox.list({ ...stack.conn, labels: { remove: 'sdk' } })).length === 0)
    assert.deepEqual(await remainsOf(stack, sbx.sandboxId, netns), [])
    assert.equal(await Sandbox.kill(sbx.sandboxId, { ...stack.conn, wait: false }), false)
  })

  it('a bad wait is a 400 naming it, and the sandbox stays', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn })
    for (const value of ['no', '', '0', 'TRUE']) {
      const res = await remove(stack, sbx.sandboxId, `?wait=${value}`)
      assert.equal(res.status, 400, value)
      assert.deepEqual(res.body, { code: 'invalid_argument', message: `wait: expected true or false, got ${JSON.stringify(value)}` })
    }
    assert.equal(await sbx.isRunning(), true)
    assert.equal((await remove(stack, sbx.sandboxId, '?wait=true')).status, 204)
    assert.equal(await sbx.isRunning(), false)
  })

  it('an unknown sandbox is a 404 at once', async () => {
    const res = await remove(stack, 'sb-0000000000000000', '?wait=false')
    assert.deepEqual(res, { status: 404, body: { code: 'not_found', message: 'sandbox "sb-0000000000000000" not found' } })
  })

  it('a server closed right after the 202 finishes the destroy first: nothing left, nothing back after a restart', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn })
    const netns = await netnsOf(sbx.sandboxId)
    assert.equal((await remove(stack, sbx.sandboxId, '?wait=false')).status, 202)
    await stack.stop()
    assert.deepEqual(await remainsOf(stack, sbx.sandboxId, netns), [])
    stack = await stack.restart()
    assert.deepEqual(await Sandbox.list(stack.conn), [])
  })
})
