import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { kernelServerFingerprint, kernelServerSourceDir } from './code-interpreter-recipe.js'
import { copyPythonFiles, fingerprintOf, pythonFilesOf } from './python-package.js'

const setupScript = fileURLToPath(new URL('../../../scripts/setup.sh', import.meta.url))

let root: string
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sandstorm-pypkg-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A package tree with the things a copy must leave out: bytecode caches, dot dirs, other files. */
async function makePackage(name: string): Promise<string> {
  const dir = join(root, name)
  const files: Record<string, string> = {
    'main.py': 'from pkg.a import x\n',
    'pkg/__init__.py': '',
    'pkg/a.py': 'x = 1\n',
    'pkg/B.py': 'y = 2\n',
    'pkg/sub/c.py': 'z = "é"\n',
    'pkg/__pycache__/a.cpython-311.pyc': 'bytecode',
    'pkg/notes.txt': 'not code',
    '.hidden/d.py': 'hidden = True\n',
  }
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true })
    await writeFile(join(dir, rel), text)
  }
  return dir
}

/** setup.sh's own server_fingerprint function, run on `dir`. */
async function setupFingerprint(dir: string): Promise<string> {
  const script = await readFile(setupScript, 'utf8')
  const fn = /^server_fingerprint\(\) \{[\s\S]*?^\}$/m.exec(script)
  assert.ok(fn, 'expected a server_fingerprint function in scripts/setup.sh')
  const { stdout } = await execa('bash', ['-c', `set -euo pipefail\n${fn[0]}\nserver_fingerprint "$1"`, 'bash', dir])
  return stdout.trim()
}

describe('python package files', () => {
  it('lists the .py files bytewise sorted, without caches, dot dirs or other files', async () => {
    const dir = await makePackage('list')
    assert.deepEqual(await pythonFilesOf(dir), ['main.py', 'pkg/B.py', 'pkg/__init__.py', 'pkg/a.py', 'pkg/sub/c.py'])
  })

  it('fingerprints as setup.sh does, ignoring caches, and changes with any byte of the code', async () => {
    const dir = await makePackage('hash')
    const first = await fingerprintOf(dir, await pythonFilesOf(dir))
    assert.match(first, /^[0-9a-f]{64}$/)
    assert.equal(await setupFingerprint(dir), first)

    await writeFile(join(dir, 'pkg/__pycache__/b.cpython-311.pyc'), 'more bytecode')
    assert.equal(await fingerprintOf(dir, await pythonFilesOf(dir)), first)

    await writeFile(join(dir, 'pkg/a.py'), 'x = 2\n')
    const second = await fingerprintOf(dir, await pythonFilesOf(dir))
    assert.notEqual(second, first)
    assert.equal(await setupFingerprint(dir), second)
  })

  it('copies only the .py files, world-readable, and the copy has the same fingerprint', async () => {
    const dir = await makePackage('copy')
    const target = join(root, 'copy-target', 'opt/server')
    assert.deepEqual(await copyPythonFiles(dir, target), await pythonFilesOf(dir))
    assert.deepEqual((await readdir(join(target, 'pkg'))).sort(), ['B.py', '__init__.py', 'a.py', 'sub'])
    assert.equal((await stat(join(target, 'pkg/a.py'))).mode & 0o777, 0o644)
    assert.equal(await readFile(join(target, 'pkg/sub/c.py'), 'utf8'), 'z = "é"\n')
    assert.equal(await fingerprintOf(target, await pythonFilesOf(target)), await fingerprintOf(dir, await pythonFilesOf(dir)))
  })

  it('finds the code interpreter server in the repository, entry script and package', async () => {
    const files = await pythonFilesOf(kernelServerSourceDir)
    assert.ok(files.includes('kernel_server.py'))
    assert.ok(files.includes('sandstorm_ci/__init__.py'))
    assert.ok(files.includes('sandstorm_ci/main.py'))
    assert.equal(await kernelServerFingerprint(kernelServerSourceDir), await setupFingerprint(kernelServerSourceDir))
  })
})
