import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InvalidArgumentError } from '@sandstorm/sdk'
import { parseCopyLocation } from './remote-path.js'

const id = 'sb-k3j9x0q2m1c8v7d4'

test('ID:/abs/path is a sandbox path', () => {
  assert.deepEqual(parseCopyLocation(`${id}:/tmp/a.txt`), { kind: 'sandbox', sandboxId: id, path: '/tmp/a.txt' })
  assert.deepEqual(parseCopyLocation(`${id}:/a:b`), { kind: 'sandbox', sandboxId: id, path: '/a:b' })
})

test('local paths, including ones with a colon, stay local; - is stdio', () => {
  assert.deepEqual(parseCopyLocation('a.txt'), { kind: 'local', path: 'a.txt' })
  assert.deepEqual(parseCopyLocation('/abs/x:y'), { kind: 'local', path: '/abs/x:y' })
  assert.deepEqual(parseCopyLocation('./a:b'), { kind: 'local', path: './a:b' })
  assert.deepEqual(parseCopyLocation('-'), { kind: 'stdio' })
})

test('a relative sandbox path or a malformed id is refused with what was expected', () => {
  assert.throws(() => parseCopyLocation(`${id}:tmp/a`), (e: unknown) => e instanceof InvalidArgumentError && /absolute path after/.test(e.message))
  assert.throws(() => parseCopyLocation('box:/tmp/a'), (e: unknown) => e instanceof InvalidArgumentError && /sandbox id such as/.test(e.message))
})
