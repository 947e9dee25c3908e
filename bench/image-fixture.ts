/**
 * The images benchmark's image, made for the run: three layers written here (a static busybox
 * root; 64 MiB of random bytes, which no compressor shrinks; about 40 MiB of the host's own
 * /usr/lib files, which compress as real images do), assembled with umoci and pushed with skopeo.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { lstat, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import { pack, type Header } from 'tar-stream'
import type { TestRegistry } from '../test/helpers/registry.js'

const run = promisify(execFile)
const MiB = 1024 * 1024
const randomMiB = 64
const hostFilesMiB = 40
// Files of a real image are rarely huge; a few big libraries would make the layer one blob.
const largestHostFile = 4 * MiB
// Fixed times, as reproducible images have.
const mtime = new Date(0)

/** The pushed image. */
export interface BenchImage {
  /** `127.0.0.1:<port>/bench/big:1`. */
  reference: string
  /** What its layers hold, unpacked. */
  unpackedBytes: number
  /** What its layers weigh in the registry (gzip). */
  compressedBytes: number
  layers: number
}

/** Adds one entry to a tar being written (resolves once it is taken, so that memory stays low). */
type AddEntry = (header: Partial<Header> & Pick<Header, 'name'>, content?: Buffer) => Promise<void>

/** Writes the entries that `fill` adds to a tar file at `path`; gives the bytes of their contents. */
async function writeTar(path: string, fill: (add: AddEntry) => Promise<void>): Promise<number> {
  const p = pack()
  let bytes = 0
  const add: AddEntry = (header, content) =>
    new Promise<void>((resolve, reject) => {
      bytes += content?.length ?? 0
      const done = (err?: Error | null) => (err ? reject(err) : resolve())
      if (content) p.entry({ mtime, ...header }, content, done)
      else p.entry({ mtime, ...header }, done)
    })
  const written = pipeline(p, createWriteStream(path))
  await fill(add)
  p.finalize()
  await written
  return bytes
}


async function busyboxLayer(add: AddEntry): Promise<void> {
  await add({ name: 'bin', type: 'directory', mode: 0o755 })
  await add({ name: 'bin/busybox', mode: 0o755 }, await readFile('/bin/busybox'))
  for (const applet of ['sh', 'ls', 'cat', 'echo', 'env', 'id', 'true', 'sleep', 'mkdir', 'rm', 'cp']) {
    await add({ name: `bin/${applet}`, type: 'symlink', linkname: 'busybox', mode: 0o777 })
  }
  await add({ name: 'etc', type: 'directory', mode: 0o755 })
  await add({ name: 'etc/passwd', mode: 0o644 }, Buffer.from('root:x:0:0:root:/root:/bin/sh\n'))
  await add({ name: 'etc/group', mode: 0o644 }, Buffer.from('root:x:0:\n'))
  await add({ name: 'root', type: 'directory', mode: 0o700 })
  await add({ name: 'tmp', type: 'directory', mode: 0o1777 })
}

async function randomLayer(add: AddEntry): Promise<void> {
  await add({ name: 'opt', type: 'directory', mode: 0o755 })
  await add({ name: 'opt/data', type: 'directory', mode: 0o755 })
  for (let i = 0; i < randomMiB; i++) await add({ name: `opt/data/blob-${String(i).padStart(2, '0')}.bin`, mode: 0o644 }, randomBytes(MiB))
}

/** Copies of the host's /usr/lib files, walked in name order, until `hostFilesMiB`. */
async function hostFilesLayer(add: AddEntry): Promise<void> {
  let left = hostFilesMiB * MiB
  await add({ name: 'usr', type: 'directory', mode: 0o755 })
  const walk = async (dir: string): Promise<void> => {
    await add({ name: dir.slice(1), type: 'directory', mode: 0o755 })
    const names = (await readdir(dir).catch(() => [] as string[])).sort()
    for (const name of names) {
      if (left <= 0) return
      const path = join(dir, name)
      const info = await lstat(path).catch(() => undefined)
      if (info?.isDirectory()) await walk(path)
      else if (info?.isFile() && info.size <= largestHostFile) {
        const content = await readFile(path).catch(() => undefined)
        if (!content) continue
        await add({ name: path.slice(1), mode: 0o644 }, content)
        left -= content.length
      }
    }
  }
  await walk('/usr/lib')
}

/** Builds the image and pushes it to `registry` as `bench/big:1`. */
export async function pushBenchImage(registry: TestRegistry): Promise<BenchImage> {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-bench-image-'))
  try {
    const layout = join(dir, 'layout')
    const image = `${layout}:big`
    await run('umoci', ['init', '--layout', layout])
    await run('umoci', ['new', '--image', image])
    let unpackedBytes = 0
    const layers = [busyboxLayer, randomLayer, hostFilesLayer]
    for (const [i, fill] of layers.entries()) {
      const file = join(dir, `layer-${i}.tar`)
      unpackedBytes += await writeTar(file, fill)
      await run('umoci', ['raw', 'add-layer', '--no-history', '--image', image, file])
      await rm(file)
    }
    await run('umoci', ['config', '--no-history', '--image', image, '--os', 'linux', '--architecture', 'amd64', '--config.env', 'PATH=/bin', '--config.cmd', 'sh'])
    let compressedBytes = 0
    for (const blob of await readdir(join(layout, 'blobs/sha256'))) compressedBytes += (await stat(join(layout, 'blobs/sha256', blob))).size
    const reference = `${registry.host}/bench/big:1`
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${image}`, `docker://${reference}`])
    return { reference, unpackedBytes, compressedBytes, layers: layers.length }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
