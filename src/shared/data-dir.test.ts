import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { lockDataDir, prepareDataDir, readSecretFile } from './data-dir.js'
import { SandstormError } from './errors.js'

const refused = (pattern: RegExp) => (err: unknown) => err instanceof SandstormError && err.code === 'failed_precondition' && pattern.test(err.message)

describe('a data dir', () => {
  it('has one owner at a time; the second is told who, and gets it once the first lets go', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sandstorm-lock-'))
    try {
      const first = await lockDataDir(dir, 'sandstorm up')
      await assert.rejects(lockDataDir(dir, 'sandstorm agent'), refused(new RegExp(`in use by sandstorm up \\(pid ${process.pid}, since `)))
      await first.release()
      const second = await lockDataDir(dir, 'sandstorm agent')
      await second.release()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('is made 0700, and a looser one tightened', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sandstorm-mode-'))
    try {
      chmodSync(dir, 0o755)
      prepareDataDir(dir)
      assert.equal(statSync(dir).mode & 0o777, 0o700)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('refuses a secret that others can read, an empty one and a short one, saying what to do', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sandstorm-secret-'))
    const file = join(dir, 'secret')
    try {
      assert.equal(readSecretFile(file, 'the secret', 8), undefined, 'a missing file is for the caller to make')
      writeFileSync(file, 'x'.repeat(64), { mode: 0o644 })
      chmodSync(file, 0o644)
      assert.throws(() => readSecretFile(file, 'the secret', 8), refused(/mode 644: expected 600.*chmod 600/))
      chmodSync(file, 0o600)
      assert.equal(readSecretFile(file, 'the secret', 8), 'x'.repeat(64))
      writeFileSync(file, '\n')
      assert.throws(() => readSecretFile(file, 'the secret', 8), refused(/holds 0 bytes: expected at least 8.*remove it/))
      writeFileSync(file, 'abc\n')
      assert.throws(() => readSecretFile(file, 'the secret', 8), refused(/holds 3 bytes/))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
