import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { AgentApi } from '../agent/index.js'
import { tarBytes } from '../images/layers/tar.fixture.js'
import { SandstormError, silentLogger } from '../shared/index.js'
import { createImageBuildService } from './image-builds.js'

let work: string
let n = 0
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sandstorm-image-uploads-'))
})
after(() => rm(work, { recursive: true, force: true }))

const roomBytes = 64 * 1024

/** The service as the server makes it, its room on the disk `room` bytes; receiving needs no agent. */
const serviceWith = (room: number) => createImageBuildService({ agent: {} as AgentApi, dataDir: join(work, 'data'), logger: silentLogger(), roomOf: async () => room })
const scratchDir = () => mkdtemp(join(work, `scratch-${n++}-`))

/** `bytes` in chunks of 16 KiB, counting how many were read. */
function bodyOf(bytes: Buffer): AsyncIterable<Uint8Array> & { reads: number } {
  const body = {
    reads: 0,
    async *[Symbol.asyncIterator]() {
      for (let i = 0; i < bytes.length; i += 16 * 1024) {
        body.reads++
        yield bytes.subarray(i, i + 16 * 1024)
      }
    },
  }
  return body
}

const noRoom = (what: string, free: number) => (err: unknown) => {
  assert.ok(err instanceof SandstormError, String(err))
  assert.equal(err.code, 'resource_exhausted')
  assert.match(err.message, new RegExp(`^${what} failed: the host's disk is full: it needs at least \\d+ bytes and ${free} bytes are free`))
  return true
}

describe('image build uploads', () => {
  it('stop an image archive at the room on the disk, keeping nothing of it', async () => {
    const dir = await scratchDir()
    await assert.rejects(serviceWith(roomBytes).receiveFile(bodyOf(Buffer.alloc(256 * 1024, 1)), dir), noRoom('receiving the image archive', roomBytes))
    assert.deepEqual(await readdir(dir), [])
  })

  it('stop a build context whose files take more than the room, keeping nothing of it', async () => {
    const dir = await scratchDir()
    const tar = await tarBytes([{ name: 'Dockerfile', content: 'FROM debian\n' }, { name: 'big', content: Buffer.alloc(256 * 1024, 1) }])
    await assert.rejects(serviceWith(roomBytes).receiveContext(bodyOf(tar), dir), noRoom('unpacking the build context', roomBytes))
    assert.deepEqual(await readdir(dir), [])
  })

  it('refuse at once when there is no room, reading nothing', async () => {
    const body = bodyOf(Buffer.alloc(1024))
    await assert.rejects(serviceWith(-1).receiveFile(body, await scratchDir()), (err: unknown) => err instanceof SandstormError && err.code === 'resource_exhausted' && /0 bytes are free/.test(err.message))
    await assert.rejects(serviceWith(0).receiveContext(body, await scratchDir()), (err: unknown) => err instanceof SandstormError && err.code === 'resource_exhausted')
    assert.equal(body.reads, 0)
  })

  it('take what fits', async () => {
    const tar = await tarBytes([{ name: 'Dockerfile', content: 'FROM debian\n' }, { name: 'big', content: Buffer.alloc(256 * 1024, 1) }])
    const service = serviceWith(1024 * 1024)
    const contextDir = await service.receiveContext(bodyOf(tar), await scratchDir())
    assert.equal(await readFile(join(contextDir, 'Dockerfile'), 'utf8'), 'FROM debian\n')
    const path = await service.receiveFile(bodyOf(tar), await scratchDir())
    assert.deepEqual(await readFile(path), tar)
  })
})
