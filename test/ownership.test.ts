/**
 * One owner per data dir: a second `sandstorm up` (or `agent`) on the same data dir exits at once,
 * naming the first, with the first's sandboxes untouched; a busy port is found before anything is
 * adopted.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { execa, type ResultPromise } from 'execa'
import { Sandbox } from '@sandstorm/sdk'
import { startUpProcess } from './helpers/fleet-processes.js'
import { skipReason, templatesDir } from './helpers/stack.js'

const skip = skipReason() ?? false
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))
const env = { SANDSTORM_TEMPLATES_DIR: templatesDir, SANDSTORM_LOG_LEVEL: 'warn' }

describe('one owner per data dir', { skip, timeout: 120_000 }, () => {
  let dir: string
  let first: ResultPromise
  let conn: { apiUrl: string; apiKey: string }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandstorm-owner-'))
    ;({ child: first, conn } = await startUpProcess(dir))
  })
  after(async () => {
    first?.kill('SIGTERM')
    await first
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('a second up or agent on the same data dir exits at once, naming the first, and touches nothing', async () => {
    const sbx = await Sandbox.create('debian', { ...conn })
    for (const args of [['up', '--port', '0'], ['agent', '--server', '127.0.0.1:1', '--token', 'x']]) {
      const second = await execa('node', [cli, ...args, '--data-dir', dir], { env, reject: false, stdin: 'ignore', timeout: 30_000 })
      assert.equal(second.exitCode, 1, `${args[0]}: ${second.stderr}`)
      assert.match(second.stderr, new RegExp(`is in use by sandstorm up \\(pid ${first.pid}`))
    }
    assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n')
    assert.deepEqual((await Sandbox.list(conn)).map((s) => s.id), [sbx.sandboxId])
    await sbx.kill()
  })

  it('up on a busy port exits before it adopts anything', async () => {
    const busy = createServer()
    busy.listen(0, '127.0.0.1')
    await once(busy, 'listening')
    const other = await mkdtemp(join(tmpdir(), 'sandstorm-owner-'))
    try {
      const port = (busy.address() as AddressInfo).port
      const r = await execa('node', [cli, 'up', '--data-dir', other, '--port', String(port)], { env, reject: false, stdin: 'ignore', timeout: 30_000 })
      assert.equal(r.exitCode, 1, r.stderr)
      assert.match(r.stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is taken.*--port`))
    } finally {
      busy.close()
      await rm(other, { recursive: true, force: true })
    }
  })
})
