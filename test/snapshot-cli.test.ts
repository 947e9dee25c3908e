/**
 * The snapshot commands of the CLI against a real stack, and `setup --btrfs-loop` followed by
 * snapshots and forks on the btrfs driver.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { Sandbox } from '@sandstorm/sdk'
import { unmount } from '../src/storage/index.js'
import { btrfsSkipReason } from './helpers/btrfs-loop.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false
const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))

describe('snapshot commands', { skip }, () => {
  let stack: Stack
  const cli = async (...args: string[]) => {
    const r = await execa('node', [main, '--url', stack.conn.apiUrl, '--api-key', stack.conn.apiKey, ...args], { reject: false })
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr }
  }
  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('snapshots, draws the tree, forks and refuses to delete a parent', async () => {
    const sb = await Sandbox.create('debian', { ...stack.conn })
    const root = await cli('snapshot', sb.sandboxId, '--label', 'start')
    assert.equal(root.code, 0, root.stderr)
    const rootId = root.stdout.trim()
    const forked = await cli('fork', rootId, '--count', '2')
    assert.equal(forked.code, 0, forked.stderr)
    const forkIds = forked.stdout.trim().split('\n')
    assert.equal(forkIds.length, 2)
    const child = await cli('snapshot', forkIds[0]!)
    const childId = child.stdout.trim()
    const tree = await cli('snapshot', 'ls', '--tree')
    assert.equal(tree.code, 0, tree.stderr)
    assert.deepEqual(tree.stdout.split('\n').map((l) => l.split(' ')[0] === '└──' ? l.split(' ')[1] : l.split(' ')[0]), [rootId, childId])
    assert.match(tree.stdout, new RegExp(`^${rootId} "start" \\(debian, from ${sb.sandboxId}\\)\\n└── ${childId} `))
    const refused = await cli('snapshot', 'rm', rootId)
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, new RegExp(`cannot be deleted.*${childId}`))
    assert.equal((await cli('snapshot', 'rm', childId)).code, 0)
    for (const id of [sb.sandboxId, ...forkIds]) await Sandbox.kill(id, stack.conn)
    assert.equal((await cli('snapshot', 'rm', rootId)).code, 0)
    assert.equal((await cli('snapshot', 'ls', '--json')).stdout.trim(), '[]')
  })
})

describe('setup --btrfs-loop', { skip }, () => {
  it('puts the layer store on btrfs, where snapshots and forks are subvolume snapshots', async (t) => {
    const reason = await btrfsSkipReason()
    if (reason) return t.skip(reason)
    const dataDir = await mkdtemp(join(tmpdir(), 'sandstorm-btrfs-setup-'))
    let stack: Stack | undefined
    try {
      const setup = await execa('node', [main, 'setup', '--btrfs-loop', '300M', '--data-dir', dataDir], { reject: false })
      assert.equal(setup.exitCode, 0, setup.stderr)
      const fsType = await execa('stat', ['-f', '-c', '%T', join(dataDir, 'storage')])
      assert.equal(fsType.stdout.trim(), 'btrfs')
      stack = await startStack({ dataDir })
      const sb = await Sandbox.create('debian', { ...stack.conn })
      await sb.commands.run('echo on-btrfs > /mark && rm /etc/debian_version', { ...stack.conn })
      const snap = await sb.snapshot(stack.conn)
      assert.equal(snap.driver, 'btrfs')
      const [fork] = await Sandbox.fork(snap.id, { ...stack.conn })
      const seen = await fork!.commands.run('cat /mark; test -e /etc/debian_version || echo deleted', { ...stack.conn })
      assert.equal(seen.stdout, 'on-btrfs\ndeleted\n')
    } finally {
      if (stack) {
        for (const s of await stack.agent.list()) await stack.agent.destroy(s.id).catch(() => undefined)
        await stack.stop()
      }
      await unmount(join(dataDir, 'storage'))
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
