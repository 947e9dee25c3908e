import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { parseInput } from '../validation.js'
import { dockerfilePlan } from './template-build-dockerfile.js'
import { startBuildBody } from './template-build-wire.js'

const hash = 'a'.repeat(64)
const plan = (body: unknown) => dockerfilePlan(parseInput(startBuildBody, body))
const refused = (body: unknown, field: RegExp) =>
  assert.throws(
    () => plan(body),
    (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && field.test(err.message),
  )

describe('e2b template JSON as a Dockerfile', () => {
  it('maps what the SDK serializes (fromImage, runCmd, copy, setEnvs, setWorkdir, setUser, setStartCmd) line by line', () => {
    const p = plan({
      fromImage: 'localhost:5000/app:1',
      steps: [
        { type: 'RUN', args: ['apt-get update && echo "a\nb" > /x'], force: false },
        { type: 'COPY', args: ['src/app.py', '/app/', '', ''], filesHash: hash, force: false },
        { type: 'ENV', args: ['A', 'one two', 'B', 'say "hi" \\ $HOME'], force: false },
        { type: 'WORKDIR', args: ['/app'], force: false },
        { type: 'USER', args: ['user'], force: false },
        { type: 'COPY', args: ['data', 'rel', 'user:user', '0640'], filesHash: hash, force: false },
      ],
      startCmd: 'python3 -m http.server 8000',
      readyCmd: 'curl -sf localhost:8000',
      force: false,
    })
    assert.deepEqual(p.from, { kind: 'image', image: 'localhost:5000/app:1' })
    assert.equal(
      p.dockerfile,
      [
        'FROM localhost:5000/app:1',
        'RUN ["/bin/sh","-c","apt-get update && echo \\"a\\nb\\" > /x"]',
        `COPY ["${hash}/src/app.py","/app/"]`,
        'ENV A="one two" B="say \\"hi\\" \\\\ $HOME"',
        'WORKDIR /app',
        'USER user',
        `COPY --chown=user:user --chmod=0640 ["${hash}/data","rel"]`,
        '',
      ].join('\n'),
    )
    assert.deepEqual(p.stepOf, ['base', '1', '2', '3', '4', '5', '6'])
    assert.deepEqual(p.filesHashes, [hash])
    assert.deepEqual(p.start, { cmd: 'python3 -m http.server 8000', user: 'user', cwd: '/app', ready: { type: 'command', cmd: 'curl -sf localhost:8000' } })
  })

  it("runs a RUN with its own user between two USER lines, back to the user in effect", () => {
    const p = plan({
      fromTemplate: 'debian',
      steps: [
        { type: 'RUN', args: ['whoami', 'nobody'] },
        { type: 'USER', args: ['1000'] },
        { type: 'RUN', args: ['id', 'root'] },
        { type: 'RUN', args: ['id', '1000'] },
      ],
    })
    assert.deepEqual(p.from, { kind: 'template', template: 'debian' })
    assert.deepEqual(p.dockerfile.trim().split('\n'), [
      'FROM debian',
      'USER nobody',
      'RUN ["/bin/sh","-c","whoami"]',
      'USER root',
      'USER 1000',
      'USER root',
      'RUN ["/bin/sh","-c","id"]',
      'USER 1000',
      'RUN ["/bin/sh","-c","id"]',
    ])
    assert.deepEqual(p.stepOf, ['base', '1', '1', '1', '2', '3', '3', '3', '4'])
    assert.equal(p.start, undefined)
  })

  it('gives a start command without a ready command a check that passes at once, and keeps registry credentials', () => {
    const p = plan({ fromImage: 'alpine:3', fromImageRegistry: { type: 'registry', username: 'u', password: 'p' }, startCmd: 'sleep infinity' })
    assert.deepEqual(p.from, { kind: 'image', image: 'alpine:3', credentials: { username: 'u', password: 'p' } })
    assert.deepEqual(p.start, { cmd: 'sleep infinity', ready: { type: 'command', cmd: 'true' } })
  })

  it('refuses a step that could break out of its line or its context, naming the field', () => {
    refused({ fromImage: 'alpine', steps: [{ type: 'WORKDIR', args: ['/a\nRUN evil'] }] }, /^steps\[0\]\.args\[0\]: expected a directory/)
    refused({ fromImage: 'alpine', steps: [{ type: 'ENV', args: ['A', 'x\nRUN evil'] }] }, /^steps\[0\]\.args\[1\]: /)
    refused({ fromImage: 'alpine', steps: [{ type: 'ENV', args: ['A=B', 'x'] }] }, /^steps\[0\]\.args\[0\]: expected an environment variable name/)
    refused({ fromImage: 'alpine', steps: [{ type: 'ENV', args: ['A'] }] }, /^steps\[0\]\.args: expected name and value pairs/)
    refused({ fromImage: 'alpine', steps: [{ type: 'USER', args: ['root\nRUN evil'] }] }, /^steps\[0\]\.args\[0\]: expected a user/)
    refused({ fromImage: 'alpine', steps: [{ type: 'RUN', args: ['id', 'a b'] }] }, /^steps\[0\]\.args\[1\]: expected a user/)
    refused({ fromImage: 'alpine', steps: [{ type: 'COPY', args: ['../etc/passwd', '/x'], filesHash: hash }] }, /^steps\[0\]\.args\[0\]: expected a path relative/)
    refused({ fromImage: 'alpine', steps: [{ type: 'COPY', args: ['a/../../b', '/x'], filesHash: hash }] }, /^steps\[0\]\.args\[0\]: /)
    refused({ fromImage: 'alpine', steps: [{ type: 'COPY', args: ['/etc', '/x'], filesHash: hash }] }, /^steps\[0\]\.args\[0\]: /)
    refused({ fromImage: 'alpine', steps: [{ type: 'COPY', args: ['a', '/x'] }] }, /^steps\[0\]\.filesHash: /)
    refused({ fromImage: 'alpine', steps: [{ type: 'COPY', args: ['a', '/x', '', '9999'], filesHash: hash }] }, /^steps\[0\]\.args\[3\]: expected an octal mode/)
    refused({ fromImage: 'alpine', steps: [{ type: 'ADD', args: ['http://x', '/x'] }] }, /^steps\[0\]\.type: expected one of "RUN"/)
    refused({ fromImage: 'alpine', steps: [{ type: 'COPY', args: ['a', '/x'], filesHash: '../../x' }] }, /^steps\.0\.filesHash: expected a SHA-256/)
  })

  it('refuses a FROM that is not exactly one image reference or one template name', () => {
    refused({ fromImage: 'alpine\nRUN evil' }, /^fromImage: image reference/)
    refused({ fromImage: 'alpine', fromTemplate: 'debian' }, /^fromImage, fromTemplate: expected exactly one/)
    refused({ steps: [] }, /^fromImage, fromTemplate: expected exactly one/)
    refused({ fromTemplate: 'Debian Bookworm' }, /^fromTemplate: expected a template name/)
    refused({ fromImage: 'alpine', fromImageRegistry: { type: 'aws', awsRegion: 'x' } }, /^fromImageRegistry\.type: expected "registry"/)
  })

  it('refuses a ready command without a start command, and a start command Sandstorm cannot hold', () => {
    refused({ fromImage: 'alpine', readyCmd: 'true' }, /^readyCmd: expected a readyCmd only with a startCmd/)
    refused({ fromImage: 'alpine', startCmd: 'a\0b' }, /^startCmd: /)
  })
})
