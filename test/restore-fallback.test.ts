/**
 * A restore that cannot switch the root in place starts a new instance of the sandbox in its
 * network namespace, where the new init's handover socket is listed in /proc/net/unix. Root in
 * the old instance is outside the new one's pid namespace, as the agent's own helper is: if it
 * ran on, it could hand the new init a channel of its own and command the restored sandbox.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from '@sandstorm/sdk'
import { sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason() ?? false

/** Hands every init handover socket it sees a socket of its own, for a minute; says so in its file. */
const attacker = String.raw`
import socket, time
keep, tried = [], set()
open('/tmp/attacker.ready', 'w').close()
end = time.time() + 60
while time.time() < end:
    for line in open('/proc/net/unix').read().splitlines()[1:]:
        f = line.split()
        if len(f) < 8 or not f[7].startswith('@sandstorm-init-inst-') or f[7] in tried:
            continue
        tried.add(f[7])
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect('\0' + f[7][1:])
            a, b = socket.socketpair()
            socket.send_fds(c, [b'x'], [b.fileno()])
            keep.append((c, a, b))
        except OSError:
            pass
`

describe('a restore that starts a new instance', { skip, timeout: 240_000 }, () => {
  let stack: Stack
  before(async () => {
    stack = await startStack()
  })
  after(() => stack?.close())

  it('stops the old instance first: nothing of it reaches the new init, and the restored sandbox answers the agent only', async () => {
    // A snapshot of a root with a read-only bind (the host template's /usr): a debian sandbox's
    // root has none, so its restore to it cannot switch in place.
    const host = await Sandbox.create('host', { ...stack.conn })
    const snap = await host.snapshot()
    await host.kill()
    const sbx = await Sandbox.create('debian', { ...stack.conn })
    try {
      await sbx.files.write('/tmp/attacker.py', attacker)
      await sh(sbx, 'setsid python3 /tmp/attacker.py >/dev/null 2>&1 &')
      await until('the attacker to run', async () => (await sh(sbx, 'test -e /tmp/attacker.ready')).exitCode === 0)
      await sbx.restore(snap.id)
      // The host template's root: the restore took the snapshot's, in a new instance.
      assert.equal((await sh(sbx, 'test -e /tmp/attacker.ready || echo gone')).stdout, 'gone\n')
      // Every command goes through the init's channel: one the attacker held would end or hang them.
      for (let i = 0; i < 5; i++) assert.equal((await sh(sbx, `echo ${i}`, { timeoutMs: 10_000 })).stdout, `${i}\n`)
      const ps = await sh(sbx, 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done')
      assert.doesNotMatch(ps.stdout, /attacker/)
    } finally {
      await sbx.kill()
    }
  })
})
