import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseAuthChallenge } from './www-authenticate.js'

describe('parseAuthChallenge', () => {
  it('reads a bearer challenge with quoted, escaped and bare values', () => {
    assert.deepEqual(parseAuthChallenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'), {
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'reg', scope: 'repository:a/b:pull,push' },
    })
    assert.deepEqual(parseAuthChallenge('Basic realm="a \\"b\\"", charset=UTF-8'), { scheme: 'basic', params: { realm: 'a "b"', charset: 'UTF-8' } })
  })
  it('gives nothing for no header', () => {
    assert.equal(parseAuthChallenge(null), undefined)
    assert.equal(parseAuthChallenge(''), undefined)
  })
})
