import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../shared/index.js'
import { imageDefaultsOf } from './image-config.js'

const diffId = `sha256:${'b'.repeat(64)}`

describe('imageDefaultsOf', () => {
  it('reads env, workdir, user, entrypoint, cmd, ports and labels', () => {
    const summary = imageDefaultsOf({
      architecture: 'amd64',
      os: 'linux',
      config: {
        Env: ['PATH=/usr/bin:/bin', 'EQ=a=b', 'EMPTY='],
        WorkingDir: '/srv',
        User: '1000:1000',
        Entrypoint: ['/entry.sh'],
        Cmd: ['serve', '--port', '80'],
        ExposedPorts: { '8080/tcp': {}, '53/udp': {}, '80': {}, '80/tcp': {} },
        Labels: { 'org.opencontainers.image.title': 'x' },
      },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created_by: 'ignored' }],
    })
    assert.deepEqual(summary.defaults, {
      env: { PATH: '/usr/bin:/bin', EQ: 'a=b', EMPTY: '' },
      workingDir: '/srv',
      user: '1000:1000',
      entrypoint: ['/entry.sh'],
      cmd: ['serve', '--port', '80'],
      exposedPorts: [53, 80, 8080],
      labels: { 'org.opencontainers.image.title': 'x' },
    })
    assert.deepEqual(summary.diffIds, [diffId])
    assert.equal(summary.platform, 'linux/amd64')
  })

  it('takes nulls and an absent config as nothing set', () => {
    const summary = imageDefaultsOf({ config: { Env: null, Cmd: null, Labels: null, WorkingDir: '' }, rootfs: { type: 'layers', diff_ids: [] } })
    assert.deepEqual(summary.defaults, { env: {}, exposedPorts: [], labels: {} })
    assert.deepEqual(imageDefaultsOf({ rootfs: { type: 'layers', diff_ids: [] } }).defaults, { env: {}, exposedPorts: [], labels: {} })
  })

  for (const [name, config, says] of [
    ['not an object', 'text', 'expected an OCI image config'],
    ['no rootfs', { config: {} }, 'rootfs'],
    ['a bad diffID', { rootfs: { type: 'layers', diff_ids: ['md5:x'] } }, 'rootfs.diff_ids.0'],
    ['a bad port', { config: { ExposedPorts: { '99999/tcp': {} } }, rootfs: { type: 'layers', diff_ids: [] } }, '"99999/tcp"'],
    ['an Env without a name', { config: { Env: ['=x'] }, rootfs: { type: 'layers', diff_ids: [] } }, '"=x"'],
    ['a Cmd that is not strings', { config: { Cmd: [1] }, rootfs: { type: 'layers', diff_ids: [] } }, 'config.Cmd.0'],
  ] as const) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => imageDefaultsOf(config),
        (err: unknown) => err instanceof SandstormError && err.code === 'invalid_argument' && err.message.includes(says),
      )
    })
  }
})
