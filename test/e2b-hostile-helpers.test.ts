/**
 * The files API runs programs of the sandbox's own root (perl, find, python3) to list and watch,
 * and the agent keeps what commands print: a sandbox that replaces those programs, or commands
 * that print a lot, must cost the server and the agent bounded memory, and fail with an error
 * that says why.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Sandbox } from 'e2b'
import { e2bSuite } from './helpers/e2b-env.js'
import { skipReason } from './helpers/stack.js'
import { until } from './helpers/until.js'

const skip = skipReason()

describe('e2b SDK: files and commands against a sandbox that prints without end', { skip: skip ?? false }, () => {
  const suite = e2bSuite()

  test('a listing whose helper prints past the bound fails naming it, and the helper is killed', async () => {
    const sbx = await Sandbox.create()
    try {
      await sbx.commands.run("mv /usr/bin/perl /usr/bin/perl.real && printf '#!/bin/sh\\nexec yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n' > /usr/bin/perl && chmod 755 /usr/bin/perl", { user: 'root' })
      await assert.rejects(sbx.files.list('/tmp'), /list \/tmp: the answer is larger than the 64 MiB a helper may print/)
      // The printing helper is gone, not left to print on.
      await until('the helper killed', async () => (await sbx.commands.run('pgrep -x yes || true', { user: 'root' })).stdout.trim() === '' || undefined)
      await sbx.commands.run('mv /usr/bin/perl.real /usr/bin/perl && touch /tmp/listed', { user: 'root' })
      assert.ok((await sbx.files.list('/tmp')).some((e) => e.name === 'listed'), 'listing works again with the real perl')
    } finally {
      await sbx.kill()
    }
  })

  test('a listing whose helper prints endless tiny records is cut at 100,000 entries, and a stat at one, the helper killed', async () => {
    const sbx = await Sandbox.create()
    try {
      // Eleven NUL-ended fields a line: a record of the lister's shape, some 2.7 million of them in 64 MiB.
      await sbx.commands.run("mv /usr/bin/perl /usr/bin/perl.real && printf '#!/bin/sh\\nyes \"f f 644 0 1 u g /x  \" | tr \" \\\\n\" \"\\\\000\\\\000\"\\n' > /usr/bin/perl && chmod 755 /usr/bin/perl", { user: 'root' })
      await assert.rejects(sbx.files.list('/tmp'), /list \/tmp: more than 100000 entries: ask for less/)
      await assert.rejects(sbx.files.getInfo('/tmp'), /stat \/tmp: the helper printed more than one entry/)
      await until('the helper killed', async () => (await sbx.commands.run('pgrep -x yes || true', { user: 'root' })).stdout.trim() === '' || undefined)
      await sbx.commands.run('mv /usr/bin/perl.real /usr/bin/perl', { user: 'root' })
      assert.equal((await sbx.files.getInfo('/tmp')).type, 'dir')
    } finally {
      await sbx.kill()
    }
  })

  test('an upload whose helper prints past the bound instead of reading fails naming it, and the server goes on', async () => {
    const sbx = await Sandbox.create()
    try {
      // Uploads run the sandbox's /bin/sh with the file on its stdin: this one never reads it.
      await sbx.commands.run("mv /bin/sh /bin/sh.real && printf '#!/bin/bash\\nexec yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n' > /bin/sh && chmod 755 /bin/sh", { user: 'root' })
      await assert.rejects(sbx.files.write('/tmp/big.bin', new Blob([Buffer.alloc(16 * 1024 * 1024)])), /the answer is larger than the 64 MiB a helper may print/)
      await sbx.commands.run('mv /bin/sh.real /bin/sh', { user: 'root' })
      await sbx.files.write('/tmp/small.txt', 'fine')
      assert.equal(await sbx.files.read('/tmp/small.txt'), 'fine')
    } finally {
      await sbx.kill()
    }
  })

  test('a watcher that prints a line no event makes ends the watch with an error, without reading on', async () => {
    const sbx = await Sandbox.create()
    try {
      await sbx.files.makeDir('/home/user/watched')
      // The watcher is the sandbox's python3: this one says it is ready, then prints 1 MiB without a newline.
      await sbx.commands.run("rm /usr/bin/python3 && printf '#!/bin/sh\\necho ready\\nhead -c 1048576 /dev/zero | tr \"\\\\\\\\0\" a\\nexec sleep 600\\n' > /usr/bin/python3 && chmod 755 /usr/bin/python3", { user: 'root' })
      const ended = new Promise<Error | undefined>((resolve) => {
        void sbx.files.watchDir('/home/user/watched', () => undefined, { onExit: resolve })
      })
      const err = await Promise.race([ended, new Promise<string>((resolve) => setTimeout(() => resolve('still watching after 20 s'), 20_000))])
      assert.ok(err instanceof Error, String(err))
      assert.match(err.message, /watch \/home\/user\/watched: the watcher printed a line longer than/)
    } finally {
      await sbx.kill()
    }
  })

  test('finished commands keep at most 32 MiB of output between them in the agent', async () => {
    const sbx = await Sandbox.create()
    try {
      const { agent } = suite.stack
      const big = async (): Promise<number> => {
        const { pid } = await agent.exec(sbx.sandboxId, { argv: ['head', '-c', String(8 * 1024 * 1024), '/dev/zero'], env: {}, user: 'root' })
        assert.equal((await agent.wait(sbx.sandboxId, pid)).exitCode, 0)
        return pid
      }
      const pids: number[] = []
      for (let i = 0; i < 8; i++) pids.push(await big())
      // One more start: finished ones are forgotten as a new one starts.
      await agent.wait(sbx.sandboxId, (await agent.exec(sbx.sandboxId, { argv: ['true'], env: {}, user: 'root' })).pid)
      const listed = new Set((await agent.processes(sbx.sandboxId)).map((p) => p.pid))
      const kept = pids.filter((pid) => listed.has(pid))
      assert.deepEqual(kept, pids.slice(-4), 'the newest four (32 MiB) should be kept, no more')
    } finally {
      await sbx.kill()
    }
  })
})
