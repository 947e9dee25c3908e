import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createAccessTokens } from '../access-tokens.js'
import { parseFind, permissionString } from './entry-info.js'
import { resolvePath } from './envd-scope.js'
import { FileType } from './gen/filesystem/filesystem_pb.js'
import { isE2bPath } from './index.js'
import { ptyInputFrame, ptyResizeFrame } from './pty-helper.js'
import { helperError } from './sandbox-run.js'

test('E2B paths are told apart from Sandstorm paths', () => {
  for (const p of ['/sandboxes', '/sandboxes/sb-1/connect', '/v2/sandboxes', '/process.Process/Start', '/filesystem.Filesystem/Stat', '/files', '/health']) {
    assert.equal(isE2bPath(p), true, p)
  }
  for (const p of ['/v1/sandboxes', '/healthz', '/metrics', '/filesx', '/sandboxesx']) assert.equal(isE2bPath(p), false, p)
})

test('find output becomes entries, symlinks keep their target', () => {
  const out = Buffer.from(['f', '644', '5', '1700000000.5', 'user', 'user', '', '/home/user/a.txt', 'l', '777', '3', '1700000000', 'root', 'root', '/etc', '/x', ''].join('\0'))
  const [file, link] = parseFind(out)
  assert.equal(file?.name, 'a.txt')
  assert.equal(file?.type, FileType.FILE)
  assert.equal(file?.size, 5n)
  assert.equal(file?.permissions, '-rw-r--r--')
  assert.equal(link?.type, FileType.SYMLINK)
  assert.equal(link?.symlinkTarget, '/etc')
  assert.equal(permissionString('d', 0o755), 'drwxr-xr-x')
})

test('relative paths resolve against the home, and stay normalised', () => {
  const scope = { sandboxId: 'sb', user: 'user', home: '/home/user' }
  assert.equal(resolvePath(scope, 'a/b'), '/home/user/a/b')
  assert.equal(resolvePath(scope, '~/x'), '/home/user/x')
  assert.equal(resolvePath(scope, '/tmp/../etc'), '/etc')
  assert.throws(() => resolvePath(scope, 'a\0b'), /NUL/)
})

test('pty frames: kind, big-endian length, body', () => {
  assert.deepEqual([...ptyInputFrame(new Uint8Array([104, 105]))], [0, 0, 0, 0, 2, 104, 105])
  assert.deepEqual([...ptyResizeFrame(120, 40)], [1, 0, 0, 0, 4, 0, 120, 0, 40])
})

test('helper stderr becomes a coded error', () => {
  assert.equal(helperError('read', '/x', 'cat: /x: No such file or directory').code, 'not_found')
  assert.equal(helperError('write', '/root/x', 'sh: 1: cannot create /root/x: Permission denied').code, 'permission_denied')
  assert.equal(helperError('make dir', '/x', '/x: File exists').code, 'already_exists')
  assert.equal(helperError('read', '/x', 'something odd').code, 'internal')
})

test('access tokens: stable per data dir, one per sandbox', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'e2b-tokens-'))
  try {
    const a = createAccessTokens(dir)
    const b = createAccessTokens(dir)
    assert.equal(a.tokenFor('sb-1'), b.tokenFor('sb-1'), 'the secret is kept in the data dir')
    assert.notEqual(a.tokenFor('sb-1'), a.tokenFor('sb-2'))
    assert.equal(a.verify('sb-1', a.tokenFor('sb-1')), true)
    assert.equal(a.verify('sb-2', a.tokenFor('sb-1')), false)
    assert.equal(a.verify('sb-1', undefined), false)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
