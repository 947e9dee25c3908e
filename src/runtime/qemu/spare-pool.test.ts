import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { silentLogger } from '../../shared/index.js'
import type { JsonChannel } from './json-channel.js'
import { createSparePool, type Spare } from './spare-pool.js'

describe('spare pool', () => {
  const root = mkdtempSync(join(tmpdir(), 'sandstorm-spares-'))
  after(() => rmSync(root, { recursive: true, force: true }))
  /** A directory that looks like a saved machine to the pool (it checks for config.json). */
  const machine = (name: string) => {
    const dir = join(root, name)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'config.json'), '{}')
    return dir
  }

  function fakePool(perMachine: number, maxMachines = 4) {
    const started: Spare[] = []
    const discarded: string[] = []
    let n = 0
    const pool = createSparePool({
      perMachine,
      maxMachines,
      logger: silentLogger(),
      // pid 0: no process; the pool must not signal it (kill(2) would take it as its own group).
      async start(machineDir) {
        const spare = { id: `sp-${n++}-${machineDir.split('/').pop()}`, dir: machineDir, pid: 0, uid: 0, qmp: {} as JsonChannel, loaded: true }
        started.push(spare)
        return spare
      },
      async discard(spare) {
        discarded.push(spare.id)
      },
    })
    return { pool, started, discarded }
  }

  it('fills a machine to its count, hands spares out once, and refills', async () => {
    const m = machine('a')
    const { pool, started } = fakePool(2)
    assert.equal(pool.take(m), null)
    await pool.fill(m)
    assert.equal(pool.ready(m), 2)
    const first = pool.take(m)
    assert.equal(first?.id, started[0]!.id)
    assert.equal(pool.ready(m), 1)
    await pool.fill(m)
    assert.equal(started.length, 3)
    await pool.close()
  })

  it('drops the spares of a machine, of the least recently cloned one past the limit, and all on close', async () => {
    const [a, b, c] = [machine('a'), machine('b'), machine('c')]
    const { pool, discarded } = fakePool(1, 2)
    await pool.fill(a)
    await pool.fill(b)
    pool.take(a)
    await pool.fill(a)
    // a was cloned last: b loses its spare when c comes.
    await pool.fill(c)
    assert.equal(pool.ready(b), 0)
    assert.ok(discarded.some((id) => id.endsWith('-b')))
    await pool.drop(a)
    assert.equal(pool.ready(a), 0)
    await pool.close()
    assert.equal(pool.ready(c), 0)
    await pool.fill(c)
    assert.equal(pool.ready(c), 0, 'a closed pool starts none')
  })

  it('starts none for a directory that holds no machine', async () => {
    const { pool, started } = fakePool(2)
    await pool.fill(join(root, 'missing'))
    assert.equal(started.length, 0)
    await pool.close()
  })
})
