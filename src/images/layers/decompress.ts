/** A layer blob's bytes as a plain tar stream: gzip and zstd undone, chosen by media type or by magic bytes. */
import { spawn } from 'node:child_process'
import { PassThrough, pipeline, Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { SandstormError, throwIfAborted, type CallOptions } from '../../shared/index.js'

/** The compressions a layer may come in. */
export type LayerCompression = 'none' | 'gzip' | 'zstd'

const gzipMagic = Buffer.from([0x1f, 0x8b])
const zstdMagic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])
const xzMagic = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])
const bzip2Magic = Buffer.from('BZh')

/**
 * The compression a media type declares, or null when it declares none that can be trusted: plain
 * `tar` media types are sniffed, since `docker save` archives list gzipped layers as tar.
 */
export function declaredCompression(mediaType: string): LayerCompression | null {
  const type = mediaType.toLowerCase()
  if (type.endsWith('+gzip') || type.endsWith('.gzip') || type.endsWith('tar.gz')) return 'gzip'
  if (type.endsWith('+zstd') || type.endsWith('.zstd')) return 'zstd'
  return null
}

/** The compression of a stream from its first bytes; xz and bzip2 (Docker's legacy ones) are refused. */
export function sniffCompression(head: Buffer): LayerCompression {
  if (startsWith(head, gzipMagic)) return 'gzip'
  if (startsWith(head, zstdMagic)) return 'zstd'
  if (startsWith(head, xzMagic) || startsWith(head, bzip2Magic)) {
    throw new SandstormError('invalid_argument', 'the layer is compressed with xz or bzip2; expected a tar, tar+gzip or tar+zstd layer')
  }
  return 'none'
}

/**
 * `input` (a tar, tar+gzip or tar+zstd stream per `mediaType`, sniffed when the media type is a plain
 * tar or unknown) as a plain tar stream. An error of `input` (a digest mismatch) errors the result,
 * which ends cleanly only when `input` did and the decompressor succeeded; destroying the result
 * destroys `input` and stops the decompressor.
 */
export async function decompressed(input: Readable, mediaType: string, options: CallOptions = {}): Promise<Readable> {
  const declared = declaredCompression(mediaType)
  const { head, rest } = declared === null ? await peek(input, 6, options.signal) : { head: null, rest: input }
  let compression: LayerCompression
  try {
    compression = declared ?? sniffCompression(head!)
  } catch (error) {
    rest.destroy()
    throw error
  }
  const out = decompress(rest, compression)
  // An error before the consumer listens must not crash the process: the consumer still sees it,
  // from the stream's state (finished() reports a stream that already errored).
  out.on('error', () => {})
  return out
}

function decompress(input: Readable, compression: LayerCompression): Readable {
  switch (compression) {
    case 'none':
      return input
    case 'gzip':
      // pipeline destroys every stream with the first error, so gunzip errors when input does.
      return pipeline(input, createGunzip(), () => {})
    case 'zstd':
      return zstdDecompressed(input)
  }
}

/**
 * `zstd -dc` over `input`. Its stdout is relayed into a stream that ends only once zstd exited 0
 * (a truncated frame makes zstd print what it could and exit 1: that must not look like a clean end).
 */
function zstdDecompressed(input: Readable): Readable {
  const out = new PassThrough()
  const child = spawn('zstd', ['-dcq'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  let stdoutEnded = false
  let exitCode: number | null | undefined
  let failed = false
  const fail = (error: Error): void => {
    if (failed) return
    failed = true
    input.destroy()
    child.kill('SIGKILL')
    out.destroy(error)
  }
  const maybeEnd = (): void => {
    if (failed || !stdoutEnded || exitCode === undefined) return
    if (exitCode === 0) out.end()
    else fail(new SandstormError('invalid_argument', `the layer is not valid zstd: ${stderr.trim() || `zstd exited ${exitCode}`}`))
  }
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    if (stderr.length < 4096) stderr += text
  })
  child.on('error', (error) => fail(new SandstormError('internal', `running zstd failed: ${error.message}`, { cause: error })))
  child.on('exit', (code, signal) => {
    exitCode = signal ? null : code
    maybeEnd()
  })
  child.stdout.on('end', () => {
    stdoutEnded = true
    maybeEnd()
  })
  child.stdout.pipe(out, { end: false })
  input.on('error', (error) => fail(error))
  // zstd stops reading when it fails; its stdin then errors with EPIPE, reported by the exit instead.
  child.stdin.on('error', () => {})
  input.pipe(child.stdin)
  out.on('close', () => {
    if (exitCode === undefined) fail(new SandstormError('canceled', 'the layer stream was closed'))
  })
  return out
}

/** The first `size` bytes of `input` (fewer when it is shorter), and a stream of all of it. */
async function peek(input: Readable, size: number, signal: AbortSignal | undefined): Promise<{ head: Buffer; rest: Readable }> {
  if (input.errored) throw input.errored
  const { head, ended } = await new Promise<{ head: Buffer; ended: boolean }>((resolve, reject) => {
    const chunks: Buffer[] = []
    let length = 0
    const cleanup = (): void => {
      input.off('readable', onReadable).off('end', onEnd).off('error', onError)
      signal?.removeEventListener('abort', onAbort)
    }
    const finish = (ended: boolean): void => {
      cleanup()
      resolve({ head: Buffer.concat(chunks), ended })
    }
    const onReadable = (): void => {
      for (let chunk = input.read() as Buffer | null; chunk !== null; chunk = input.read() as Buffer | null) {
        chunks.push(chunk)
        length += chunk.length
        if (length >= size) return finish(false)
      }
    }
    const onEnd = (): void => finish(true)
    const onError = (error: Error): void => {
      cleanup()
      reject(error)
    }
    const onAbort = (): void => {
      cleanup()
      input.destroy()
      try {
        throwIfAborted(signal)
      } catch (error) {
        reject(error)
      }
    }
    if (signal?.aborted) return onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    input.on('readable', onReadable).on('end', onEnd).on('error', onError)
  })
  if (ended) return { head, rest: Readable.from([head]) }
  // Given back, the stream is itself again: its errors, end and destroy() stay its own.
  input.unshift(head)
  return { head, rest: input }
}

function startsWith(head: Buffer, magic: Buffer): boolean {
  return head.length >= magic.length && head.subarray(0, magic.length).equals(magic)
}
