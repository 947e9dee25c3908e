/**
 * Resource limits of runc sandboxes, tested by trying to exhaust them: memory, processes and cpu.
 * Each attack must hit the sandbox's own limit, leave the sandbox usable afterwards, and leave the
 * host able to work meanwhile.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { CommandExitError, Sandbox } from '@sandstorm/sdk'
import { python, sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false

describe('runc sandbox limits under attack', { skip }, () => {
  let stack: Stack

  before(async () => {
    stack = await startStack()
  })
  after(async () => {
    await stack?.close()
  })

  it('a process allocating 512 MiB in a 64 MiB sandbox is OOM-killed and reported so', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, memoryMiB: 64 })
    try {
      // Multiplying bytes writes every page, so the memory is really used (a bare bytearray
      // would be lazily zeroed pages that never count).
      const err = await sbx.commands.run(['python3', '-c', 'a = b"\\x01" * (512 << 20); print("allocated", len(a))'], { timeoutMs: 60_000 }).then(
        () => assert.fail('the allocation succeeded'),
        (e: unknown) => e,
      )
      assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${String(err)}`)
      assert.equal(err.result.oomKilled, true)
      assert.equal(err.result.exitCode, 137)
      assert.equal(err.stdout, '')
      assert.match(err.message, /memory/)

      // The sandbox still answers, and its memory never went past the limit (memory+swap are both capped).
      const r = await sh(sbx, 'echo ok; cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes /sys/fs/cgroup/memory/memory.memsw.max_usage_in_bytes 2>/dev/null')
      const [ok, ...peaks] = r.stdout.trim().split('\n')
      assert.equal(ok, 'ok')
      for (const peak of peaks) assert.ok(Number(peak) <= 64 * 1024 * 1024, `peak usage ${peak} bytes is over the 64 MiB limit`)
      assert.equal((await sbx.getInfo()).state, 'running')
    } finally {
      await sbx.kill()
    }
  })

  it('a fork bomb hits pidsMax; the host keeps spawning, and the sandbox works once it is killed', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, pidsMax: 64, cpus: 0.5 })
    try {
      let hitLimit!: () => void
      let stderr = ''
      const limitHit = new Promise<void>((resolve) => (hitLimit = resolve))
      // The bomb's own shell stays, so that the kill below is a kill of a running command.
      const bomb = await sbx.commands.run(['bash', '-c', ':(){ :|:& };:; sleep 600'], {
        background: true,
        timeoutMs: 120_000,
        onStderr: (text) => {
          stderr += text
          if (/fork: .*Resource temporarily unavailable/.test(stderr)) hitLimit()
        },
      })
      const ended = bomb.wait().then(
        (r) => r,
        (e: unknown) => (e instanceof CommandExitError ? e.result : Promise.reject(e)),
      )
      // Either bash reports a refused fork, or the bomb ends on its own; both end the wait.
      await Promise.race([limitHit, ended])

      // Meanwhile the host spawns processes as usual.
      const host = spawnSync('true')
      assert.equal(host.status, 0, `the host could not spawn a process: ${String(host.error)}`)

      await bomb.kill()
      await ended
      assert.match(bomb.stderr, /fork: .*Resource temporarily unavailable/, 'bash never saw a refused fork')

      const r = await sh(sbx, 'echo ok; cat /sys/fs/cgroup/pids/pids.max; grep max /sys/fs/cgroup/pids/pids.events')
      const [ok, max, events] = r.stdout.trim().split('\n')
      assert.equal(ok, 'ok')
      assert.equal(max, '64')
      assert.ok(Number(events?.split(' ')[1]) > 0, `expected the pids limit to have refused forks, got "${events}"`)
    } finally {
      await sbx.kill()
    }
  })

  it('busy loops with cpus 0.5 use at most about half a cpu', async () => {
    const sbx = await Sandbox.create('debian', { ...stack.conn, cpus: 0.5 })
    try {
      // Two spinning children (this host has two cores, so without the quota they would use ~2
      // cpus); the cgroup's own cpu time over a one-second window, relative to elapsed time.
      const r = await python(sbx, [
        'import os, signal, time',
        'def usage(): return int(open("/sys/fs/cgroup/cpuacct/cpuacct.usage").read())',
        'kids = []',
        'for _ in range(2):',
        '    pid = os.fork()',
        '    if pid == 0:',
        '        while True: pass',
        '    kids.append(pid)',
        'u0, t0 = usage(), time.monotonic()',
        'time.sleep(1.0)',
        'u1, t1 = usage(), time.monotonic()',
        'for pid in kids: os.kill(pid, signal.SIGKILL)',
        'print((u1 - u0) / 1e9 / (t1 - t0))',
        'print(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read().strip())',
        'print(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read().strip())',
      ].join('\n'))
      assert.equal(r.exitCode, 0, r.stderr)
      const [cpusText, quotaUs, periodUs] = r.stdout.trim().split('\n')
      // On a busy host the loops may get less than their quota, so the bound alone could pass
      // without a quota; the kernel's own settings show that one is in force.
      assert.equal(Number(quotaUs) / Number(periodUs), 0.5, `cfs quota ${quotaUs} / period ${periodUs}`)
      const cpus = Number(cpusText)
      assert.ok(cpus > 0, `expected the loops to have run, got ${r.stdout}`)
      assert.ok(cpus <= 0.65, `expected at most ~0.5 cpu under a 0.5 quota, measured ${cpus.toFixed(3)}`)
    } finally {
      await sbx.kill()
    }
  })
})
