import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { isLoopbackHost, parseImageReference } from './reference.js'

const hex = 'a'.repeat(64)

describe('parseImageReference', () => {
  it('gives Docker Hub names their library/ prefix, API host and latest tag', () => {
    assert.deepEqual(parseImageReference('alpine'), {
      registry: 'docker.io',
      apiHost: 'registry-1.docker.io',
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/alpine:latest',
    })
    assert.equal(parseImageReference('bitnami/redis:7').repository, 'bitnami/redis')
    assert.equal(parseImageReference('docker.io/ubuntu:22.04').canonical, 'docker.io/library/ubuntu:22.04')
    assert.equal(parseImageReference('index.docker.io/library/ubuntu').registry, 'docker.io')
  })

  it('reads a registry with a port, tags and digests', () => {
    const ref = parseImageReference(`127.0.0.1:5000/team/app:v1.2@sha256:${hex}`)
    assert.equal(ref.registry, '127.0.0.1:5000')
    assert.equal(ref.apiHost, '127.0.0.1:5000')
    assert.equal(ref.repository, 'team/app')
    assert.equal(ref.tag, 'v1.2')
    assert.equal(ref.digest, `sha256:${hex}`)
    const pinned = parseImageReference(`ghcr.io/o/r@sha256:${hex}`)
    assert.equal(pinned.tag, undefined, 'a digest alone gets no latest tag')
    assert.equal(parseImageReference('localhost/x').registry, 'localhost')
    assert.equal(parseImageReference('localhost:5000/x').registry, 'localhost:5000')
    assert.equal(parseImageReference('[::1]:5000/x').registry, '[::1]:5000')
    assert.equal(parseImageReference('my-reg.example.com/a/b/c').repository, 'a/b/c')
    assert.equal(parseImageReference('a__b/c--d.e_f').repository, 'a__b/c--d.e_f')
  })

  for (const [text, says] of [
    ['', 'an empty string'],
    ['Alpine', 'path component "Alpine"'],
    ['alpine:', 'tag ""'],
    ['alpine:-x', 'tag "-x"'],
    ['alpine@sha256:abc', 'digest "sha256:abc"'],
    [`alpine@md5:${hex}`, 'digest "md5:'],
    ['a//b', 'path component ""'],
    ['a/b_', 'path component "b_"'],
    ['-x.com/a', 'registry "-x.com"'],
    ['alpine latest', 'white space'],
    [`x/${'a'.repeat(260)}`, 'characters'],
  ] as const) {
    it(`refuses ${JSON.stringify(text.slice(0, 30))}`, () => {
      assert.throws(
        () => parseImageReference(text),
        (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && err.message.includes(says) && err.message.includes('expected'),
      )
    })
  }
})

describe('isLoopbackHost', () => {
  it('knows loopback hosts and ports', () => {
    for (const host of ['127.0.0.1:5000', '127.1.2.3', 'localhost', 'localhost:80', '[::1]:5000']) assert.ok(isLoopbackHost(host), host)
    for (const host of ['10.0.0.1:5000', 'localhost.example.com', 'docker.io', '[::2]:5']) assert.ok(!isLoopbackHost(host), host)
  })
})
