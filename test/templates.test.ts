/**
 * Checks a template store that scripts/setup.sh built (it runs debootstrap; tests never do).
 * Runs when that store exists (SANDSTORM_TEMPLATES_DIR, else the default data dir's).
 */
import assert from 'node:assert/strict'
import { access, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { createTemplateStore } from '../src/templates/index.js'
import { templatesDir } from './helpers/stack.js'

const dir = templatesDir
const skip = await skipReason()

async function skipReason(): Promise<string | false> {
  try {
    await access(join(dir, 'debian', 'current', 'template.json'))
  } catch {
    return `no built debian template in ${dir} (run scripts/setup.sh)`
  }
  return false
}

describe('the debian template that setup built', { skip }, () => {
  it('has python3, the sandbox user and a template.json with its size', async () => {
    const store = createTemplateStore({ dir })
    const { info, rootfs } = await store.resolve('debian')
    assert.equal(info.name, 'debian')
    assert.ok(info.sizeBytes > 0, `expected sizeBytes > 0, got ${info.sizeBytes}`)
    assert.deepEqual(rootfs.readonlyBinds, [])
    const tree = rootfs.lowerDirs[0]!

    // usr/bin/python3 is a relative symlink (to python3.11), so stat resolves it inside the tree.
    assert.ok((await stat(join(tree, 'usr/bin/python3'))).isFile(), 'expected usr/bin/python3 in the tree')
    assert.ok((await stat(join(tree, 'home/user'))).isDirectory())
    assert.match(await readFile(join(tree, 'etc/passwd'), 'utf8'), /^user:x:1000:1000:/m)

    const stored = JSON.parse(await readFile(join(tree, '..', 'template.json'), 'utf8')) as { sizeBytes: number }
    assert.ok(stored.sizeBytes > 0)
    assert.ok((await store.list()).some((t) => t.name === 'debian'))
  })
})
