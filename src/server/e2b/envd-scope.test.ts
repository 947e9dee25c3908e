import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { createAccessTokens } from '../access-tokens.js'
import { envdSandboxId } from './envd-scope.js'

describe('envdSandboxId', () => {
  it("takes a sandbox's envd token, and never its traffic token, whatever the header names", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandstorm-envd-scope-'))
    try {
      const envd = createAccessTokens(dir, 'envd')
      const traffic = createAccessTokens(dir, 'traffic')
      const id = 'sb-0123456789abcdef'
      const headers = (sandboxId: string, token: string) => new Headers({ 'e2b-sandbox-id': sandboxId, 'x-access-token': token })
      assert.equal(envdSandboxId(headers(id, envd.tokenFor(id)), envd), id)
      assert.throws(() => envdSandboxId(headers(id, traffic.tokenFor(id)), envd), (err: unknown) => err instanceof SandstormError && err.code === 'unauthenticated')
      // The traffic token of X is the HMAC of "traffic:X": the envd token of a sandbox by that name.
      assert.throws(() => envdSandboxId(headers(`traffic:${id}`, traffic.tokenFor(id)), envd), (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && /E2b-Sandbox-Id/.test(err.message))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
