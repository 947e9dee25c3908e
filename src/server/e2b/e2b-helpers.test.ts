import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createAccessTokens } from '../access-tokens.js'
import { goPermissions, parseEntries } from './entry-info.js'
import { metadataOf } from './file-metadata.js'
import { checkSignature, fileSignature } from './signed-urls.js'
import { resolvePath } from './envd-scope.js'
import { FileType } from './gen/filesystem/filesystem_pb.js'
import { isE2bPath } from './index.js'
import { helperError } from './sandbox-run.js'

test('E2B paths are told apart from Sandstorm paths', () => {
  for (const p of ['/sandboxes', '/sandboxes/sb-1/connect', '/v2/sandboxes', '/process.Process/Start', '/filesystem.Filesystem/Stat', '/files', '/health']) {
    assert.equal(isE2bPath(p), true, p)
  }
  for (const p of ['/v1/sandboxes', '/healthz', '/metrics', '/filesx', '/sandboxesx']) assert.equal(isE2bPath(p), false, p)
})

test('lister records become entries: symlinks as envd shows them, metadata decoded', () => {
  const hex = (t: string) => Buffer.from(t).toString('hex')
  const records = [
    ['f', 'f', '644', '5', '1700000000.5', 'user', 'user', '/home/user/a.txt', '', '', `${hex('author')}:${hex('mish')},${hex('k')}:ff`],
    ['l', 'd', '777', '3', '1700000000', 'root', 'root', '/x', '/etc', '755', ''],
    ['l', 'N', '777', '4', '1700000000', 'root', 'root', '/gone', '/gone', '', ''],
    ['d', 'd', '1777', '4096', '1700000000', 'root', 'root', '/tmp', '', '', ''],
  ]
  const [file, link, dangling, tmp] = parseEntries(Buffer.from(records.flat().join('\0') + '\0'))
  assert.equal(file?.name, 'a.txt')
  assert.equal(file?.type, FileType.FILE)
  assert.equal(file?.size, 5n)
  assert.equal(file?.permissions, '-rw-r--r--')
  assert.deepEqual(file?.metadata, { author: 'mish' }, 'a value that is not UTF-8 is left out')
  assert.equal(link?.type, FileType.DIRECTORY, "a symlink has its target's type")
  assert.equal(link?.mode, 0o755)
  assert.equal(link?.permissions, 'Lrwxrwxrwx')
  assert.equal(link?.symlinkTarget, '/etc')
  assert.equal(dangling?.type, FileType.UNSPECIFIED)
  assert.equal(dangling?.symlinkTarget, '/gone')
  assert.equal(tmp?.mode, 0o777)
  assert.equal(tmp?.permissions, 'dtrwxrwxrwx')
  assert.equal(goPermissions('f', 0o4755), 'urwxr-xr-x', 'as Go prints it: a letter stands in for the dash')
})

test('metadata headers: lowercased keys, envd bounds, a 400 naming the key', () => {
  assert.deepEqual(metadataOf(new Headers({ 'X-Metadata-Author': 'mish', 'x-metadata-purpose': 'up load', 'content-type': 'x' })), { author: 'mish', purpose: 'up load' })
  assert.deepEqual(metadataOf(new Headers({ 'X-Metadata-': 'ignored' })), {})
  assert.throws(() => metadataOf(new Headers({ 'X-Metadata-k': 'caf\u00e9' })), /metadata value for key "k": expected printable US-ASCII/)
  assert.throws(() => metadataOf(new Headers({ ['X-Metadata-' + 'k'.repeat(247)]: 'v' })), /expected at most 246 bytes/)
  const big = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`X-Metadata-k${i}`, 'v'.repeat(900)]))
  assert.throws(() => metadataOf(new Headers(big)), /metadata: expected at most 4096 bytes in all/)
})

test('signed URLs: the SDK\'s signature checks out; tampering, expiry and absence are refused', () => {
  const token = 'a'.repeat(64)
  const query = { path: 'hello.txt', user: '', expiration: '4102444800' }
  // What the SDK's getSignature computes (base64 of SHA-256, padding dropped).
  const expected = 'v1_' + createHash('sha256').update(`hello.txt:read::${token}:4102444800`).digest('base64').replace(/=+$/, '')
  assert.equal(fileSignature(query, 'read', token), expected)
  const signed = { ...query, signature: expected }
  checkSignature(signed, 'read', token)
  assert.throws(() => checkSignature(signed, 'write', token), /invalid signature/)
  assert.throws(() => checkSignature({ ...signed, path: 'other.txt' }, 'read', token), /invalid signature/)
  assert.throws(() => checkSignature({ ...signed, user: 'root' }, 'read', token), /invalid signature/)
  assert.throws(() => checkSignature({ ...signed, expiration: '4102444801' }, 'read', token), /invalid signature/)
  assert.throws(() => checkSignature(signed, 'read', 'b'.repeat(64)), /invalid signature/)
  assert.throws(() => checkSignature({ ...signed, signature: undefined }, 'read', token), /missing signature/)
  assert.throws(() => checkSignature(signed, 'read', token, 4102444801 * 1000 + 1000), /signature is already expired/)
  const forever = { path: 'hello.txt', user: '', expiration: undefined }
  checkSignature({ ...forever, signature: fileSignature(forever, 'read', token) }, 'read', token, 4102444801 * 1000)
})

test('relative paths resolve against the home, and stay normalised', () => {
  const scope = { sandboxId: 'sb', user: 'user', userGiven: false, home: '/home/user' }
  assert.equal(resolvePath(scope, 'a/b'), '/home/user/a/b')
  assert.equal(resolvePath(scope, '~/x'), '/home/user/x')
  assert.equal(resolvePath(scope, '/tmp/../etc'), '/etc')
  assert.throws(() => resolvePath(scope, 'a\0b'), /NUL/)
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
