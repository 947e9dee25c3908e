import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError, silentLogger } from '../shared/index.js'
import { addSandboxUser } from './rootfs-etc.js'

let root: string
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sandstorm-etc-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A tree with the /etc files a Debian minbase has before our changes. */
async function debianLikeTree(name: string): Promise<string> {
  const tree = join(root, name)
  await mkdir(join(tree, 'etc/skel'), { recursive: true })
  await writeFile(join(tree, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n')
  await writeFile(join(tree, 'etc/group'), 'root:x:0:\nnogroup:x:65534:') // no trailing newline
  await writeFile(join(tree, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n')
  await writeFile(join(tree, 'etc/gshadow'), 'root:*::\n')
  await writeFile(join(tree, 'etc/skel/.bashrc'), '# bashrc\n')
  return tree
}

describe('addSandboxUser', () => {
  it('adds user 1000:1000 with a home made from /etc/skel', async () => {
    const tree = await debianLikeTree('ok')
    await addSandboxUser(tree, silentLogger())
    assert.match(await readFile(join(tree, 'etc/passwd'), 'utf8'), /\nuser:x:1000:1000::\/home\/user:\/bin\/bash\n$/)
    assert.equal(await readFile(join(tree, 'etc/group'), 'utf8'), 'root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n')
    assert.match(await readFile(join(tree, 'etc/shadow'), 'utf8'), /^user:!:\d+:0:99999:7:::$/m)
    assert.match(await readFile(join(tree, 'etc/gshadow'), 'utf8'), /^user:!::$/m)
    assert.equal(await readFile(join(tree, 'home/user/.bashrc'), 'utf8'), '# bashrc\n')
    if (process.getuid?.() === 0) assert.equal((await stat(join(tree, 'home/user/.bashrc'))).uid, 1000)
  })

  it('refuses a tree where uid 1000 is taken', async () => {
    const tree = await debianLikeTree('taken')
    await writeFile(join(tree, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n')
    await assert.rejects(addSandboxUser(tree, silentLogger()), (err: unknown) => {
      assert.ok(err instanceof SandstormError)
      assert.equal(err.code, 'failed_precondition')
      assert.match(err.message, /uid 1000/)
      return true
    })
  })
})
