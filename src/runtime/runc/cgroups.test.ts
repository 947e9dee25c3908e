/**
 * The sandbox freezer (cgroup v1) against the kernel: a cgroup whose tasks fork without pause,
 * frozen and thawed as often as a tree search snapshots.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { newId } from '../../shared/index.js'
import { freezeSandbox, thawSandbox } from './cgroups.js'
import { cgroupPath } from './layout.js'

const freezerRoot = '/sys/fs/cgroup/freezer'
const skip = process.getuid?.() !== 0 || !existsSync(freezerRoot) ? 'needs root and the cgroup v1 freezer' : false

describe('freezeSandbox', { skip }, () => {
  const id = newId('sb')
  const dir = join(freezerRoot, cgroupPath(id))
  const forkers: ChildProcess[] = []

  before(async () => {
    mkdirSync(dir, { recursive: true })
    // Each shell moves itself into the cgroup, then forks a child a few hundred times a second.
    for (let i = 0; i < 3; i++) forkers.push(spawn('sh', ['-c', `echo $$ > ${dir}/tasks; while true; do /bin/true; done`], { stdio: 'ignore' }))
    while (readFileSync(join(dir, 'tasks'), 'utf8').trim().split('\n').filter(Boolean).length < 3) await sleep(10)
  })

  after(async () => {
    writeFileSync(join(dir, 'freezer.state'), 'THAWED')
    for (const f of forkers) f.kill('SIGKILL')
    for (;;) {
      const tasks = readFileSync(join(dir, 'tasks'), 'utf8').trim().split('\n').filter(Boolean)
      if (tasks.length === 0) break
      for (const pid of tasks) {
        try {
          process.kill(Number(pid), 'SIGKILL')
        } catch {
          // exited since the read (a shell's short-lived child)
        }
      }
      await sleep(10)
    }
    rmdirSync(dir)
  })

  it('freezes tasks that fork meanwhile, every time (a task forked during the kernel walk is caught by the next write)', async () => {
    for (let i = 0; i < 400; i++) {
      assert.equal(await freezeSandbox(id), true)
      assert.equal(readFileSync(join(dir, 'freezer.state'), 'utf8').trim(), 'FROZEN')
      await thawSandbox(id)
      await sleep(1)
    }
  })
})
