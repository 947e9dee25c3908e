import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { createFramedHelper } from './framed-helper.js'

// A real helper of the agent's, built by `npm run build`: its refusals need no root.
const mountMove = fileURLToPath(new URL('../../native/mount-move', import.meta.url))
const skip = existsSync(mountMove) ? false : `no ${mountMove}: run npm run build`
const request = (...fields: string[]) => Buffer.from(fields.map((f) => `${f}\0`).join(''))

describe('a framed helper (native/mount-move)', { skip }, () => {
  it('answers requests sent at once in their order, each with its own refusal', async () => {
    const helper = createFramedHelper(mountMove, 'mount move')
    try {
      const answers = await Promise.all([
        helper.call(request('relative', '/tmp')),
        helper.call(request('/tmp', 'relative')),
        helper.call(Buffer.from('/tmp\0/tmp\0trailing')),
        helper.call(Buffer.from('/tmp')),
      ])
      assert.deepEqual(answers, [
        { ok: false, text: 'expected an absolute source path ending in NUL' },
        { ok: false, text: 'expected an absolute target path ending in NUL, and nothing after it' },
        { ok: false, text: 'expected an absolute target path ending in NUL, and nothing after it' },
        { ok: false, text: 'expected an absolute source path ending in NUL' },
      ])
    } finally {
      helper.close()
    }
  })

  it('says why the kernel refused a move (a path that is no mount point, a missing one)', async () => {
    const helper = createFramedHelper(mountMove, 'mount move')
    try {
      const missing = await helper.call(request('/nonexistent-source-of-a-move', '/tmp'))
      assert.equal(missing.ok, false)
      assert.match(missing.text, /^moving the mount at \/nonexistent-source-of-a-move to \/tmp: (No such file or directory|Operation not permitted)$/)
    } finally {
      helper.close()
    }
  })

  it('rejects what was sent to a helper that died, and starts a new one for the next request', async () => {
    const helper = createFramedHelper(mountMove, 'mount move')
    try {
      // Over the request limit: the helper exits without an answer.
      const huge = Buffer.alloc(64 * 1024, 0x61)
      await assert.rejects(helper.call(huge), /the mount move helper exited \(code 1\)/)
      assert.equal((await helper.call(request('relative', '/tmp'))).ok, false)
      helper.close()
      // After a close, a call starts it again.
      assert.equal((await helper.call(request('relative', '/tmp'))).text, 'expected an absolute source path ending in NUL')
    } finally {
      helper.close()
    }
  })

  it('rejects at once when the helper cannot run', async () => {
    const helper = createFramedHelper('/nonexistent/helper', 'missing')
    await assert.rejects(helper.call(request('/a', '/b')), /the missing helper (could not run|exited)/)
    helper.close()
  })
})
