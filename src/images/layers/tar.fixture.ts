/** Tars made in memory for the layer tests. */
import { spawnSync } from 'node:child_process'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import tar from 'tar-stream'

/** One entry of a test tar: a header (tar-stream's, with PAX records) and a file's content. */
export interface FixtureEntry {
  name: string
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo'
  content?: string | Buffer
  mode?: number
  uid?: number
  gid?: number
  mtime?: Date
  linkname?: string
  devmajor?: number
  devminor?: number
  pax?: Record<string, string>
  /** PAX records as raw bytes (values that are not UTF-8, as Go's archive/tar writes them), in a pax header of their own. */
  rawPax?: Record<string, Buffer>
}

/** The bytes of a tar holding `entries`, in order. */
export async function tarBytes(entries: FixtureEntry[]): Promise<Buffer> {
  const pack = tar.pack()
  const done = collect(pack)
  for (const e of entries) {
    const content = typeof e.content === 'string' ? Buffer.from(e.content) : (e.content ?? Buffer.alloc(0))
    const { content: _content, rawPax, ...header } = e
    if (rawPax) {
      const records = Buffer.concat(Object.entries(rawPax).map(([key, value]) => paxRecord(key, value)))
      // tar-stream's pack writes PAX values as UTF-8 only: the raw header goes in between its entries.
      pack.push(paxHeaderBlocks(records))
    }
    await new Promise<void>((resolve, reject) => {
      pack.entry({ type: 'file', mtime: new Date(1_600_000_000_000), ...header, size: e.type === undefined || e.type === 'file' ? content.length : 0 }, content, (err) => (err ? reject(err) : resolve()))
    })
  }
  pack.finalize()
  return done
}

/** A stream of `bytes`, in small chunks (so that unpacks see entries split across reads). */
export function streamOf(bytes: Buffer, chunkBytes = 4096): Readable {
  const chunks: Buffer[] = []
  for (let i = 0; i < bytes.length; i += chunkBytes) chunks.push(bytes.subarray(i, i + chunkBytes))
  return Readable.from(chunks)
}

/** `bytes` gzipped. */
export function gzip(bytes: Buffer): Buffer {
  return gzipSync(bytes)
}

/** `bytes` compressed by the zstd binary. */
export function zstd(bytes: Buffer): Buffer {
  const result = spawnSync('zstd', ['-cq'], { input: bytes, maxBuffer: 1 << 30 })
  if (result.status !== 0) throw new Error(`zstd failed: ${result.stderr.toString()}`)
  return result.stdout
}

/** A stream that gives `bytes` and then errors, as a source whose digest did not match. */
export function failingStreamOf(bytes: Buffer, message = 'digest mismatch'): Readable {
  let sent = false
  return new Readable({
    read() {
      if (!sent) {
        sent = true
        this.push(bytes)
      } else {
        this.destroy(new Error(message))
      }
    },
  })
}

/** A ustar header of type `x` (PAX) for `records`, then the records padded to 512 bytes. */
function paxHeaderBlocks(records: Buffer): Buffer {
  const header = Buffer.alloc(512)
  header.write('PaxHeader', 0)
  header.write('0000644\0', 100)
  header.write('0000000\0', 108)
  header.write('0000000\0', 116)
  header.write(`${records.length.toString(8).padStart(11, '0')}\0`, 124)
  header.write('00000000000\0', 136)
  header.write('        ', 148)
  header.write('x', 156)
  header.write('ustar\0', 257)
  header.write('00', 263)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
  const padded = Buffer.alloc(Math.ceil(records.length / 512) * 512)
  records.copy(padded)
  return Buffer.concat([header, padded])
}

/** One PAX record: `<length> <key>=<value>\n`, the length counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')])
  let length = body.length + 1
  while (String(length).length + body.length !== length) length++
  return Buffer.concat([Buffer.from(String(length)), body])
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array))
  return Buffer.concat(chunks)
}
