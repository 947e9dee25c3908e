import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Digest, ImageSource, LayerDescriptor } from '../images/contracts.js'
import { createImageLayerStore } from '../images/layers/index.js'
import { streamOf, tarBytes } from '../images/layers/tar.fixture.js'
import { SandstormError } from '../shared/index.js'
import type { TemplateStore } from '../templates/index.js'
import { emptyDefaults, maxImageLayers, storeImage } from './build-host.js'

let work: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sandstorm-store-image-'))
})
after(() => rm(work, { recursive: true, force: true }))

const digestOf = (bytes: Buffer): Digest => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** An image of `count` one-file layers, each a plain tar. */
async function imageOf(count: number): Promise<ImageSource> {
  const blobs = new Map<Digest, Buffer>()
  const layers: LayerDescriptor[] = []
  for (let i = 0; i < count; i++) {
    const blob = await tarBytes([{ name: `layer-${i}`, content: `${i}\n` }])
    blobs.set(digestOf(blob), blob)
    layers.push({ digest: digestOf(blob), mediaType: 'application/vnd.oci.image.layer.v1.tar', size: blob.length })
  }
  return {
    manifest: { reference: 'test/many-layers', digest: digestOf(Buffer.from(`image of ${count}`)), defaults: emptyDefaults(), diffIds: layers.map((l) => l.digest), layers },
    openLayer: async (layer) => streamOf(blobs.get(layer.digest)!),
    close: async () => undefined,
  }
}

describe('storeImage', () => {
  it(`stores an image of ${maxImageLayers} layers, and refuses one more before storing any`, async () => {
    const dir = join(work, 'layers')
    // storeImage needs only the templates' layer store: a real one.
    const templates = { imageLayers: createImageLayerStore({ dir }) } as unknown as TemplateStore
    const chain = await storeImage(templates, await imageOf(maxImageLayers))
    assert.equal(chain.lowerDirs.length, 127)

    const tooMany = await imageOf(maxImageLayers + 1)
    const other = { imageLayers: createImageLayerStore({ dir: join(work, 'other') }) } as unknown as TemplateStore
    await assert.rejects(storeImage(other, tooMany), (err: unknown) => {
      assert.ok(err instanceof SandstormError)
      assert.equal(err.code, 'invalid_argument')
      assert.match(err.message, new RegExp(`^image ${tooMany.manifest.digest}: expected at most 127 layers, got 128`))
      return true
    })
    assert.deepEqual(await readdir(join(work, 'other')).catch(() => []), [], 'no layer of it is stored')
  })
})
