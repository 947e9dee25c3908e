/** `sandstorm cp SRC DST`: copy a file into or out of a sandbox, streamed both ways. */
import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeWebStream } from 'node:stream/web'
import type { Command } from 'commander'
import { InvalidArgumentError, Sandbox } from '@sandstorm/sdk'
import { connectionOf } from './cli-context.js'
import { parseCopyLocation } from './remote-path.js'

/** Registers `cp`. */
export function registerCp(program: Command): void {
  program
    .command('cp')
    .description('copy a file between here and a sandbox: one side is ID:/abs/path, the other a local path or - (stdin/stdout)')
    .argument('<src>', 'ID:/abs/path, a local path, or -')
    .argument('<dst>', 'ID:/abs/path, a local path, or -')
    .action(async (src: string, dst: string, _flags: unknown, cmd: Command) => {
      const from = parseCopyLocation(src)
      const to = parseCopyLocation(dst)
      const conn = connectionOf(cmd)
      if (from.kind === 'sandbox' && to.kind !== 'sandbox') {
        const sbx = await Sandbox.connect(from.sandboxId, conn)
        const body = await sbx.files.read(from.path, { format: 'stream' })
        const source = Readable.fromWeb(body as unknown as NodeWebStream<Uint8Array>)
        if (to.kind === 'stdio') return pipeline(source, stdoutKeptOpen())
        const target = (await isLocalDir(to.path)) ? join(to.path, basename(from.path)) : to.path
        return pipeline(source, createWriteStream(target))
      }
      if (to.kind === 'sandbox' && from.kind !== 'sandbox') {
        const sbx = await Sandbox.connect(to.sandboxId, conn)
        const input = from.kind === 'stdio' ? process.stdin : createReadStream(from.path)
        // Opening first turns a missing local file into a clear error before anything is sent.
        if (from.kind === 'local') await stat(from.path)
        let target = to.path
        if (from.kind === 'local' && (target.endsWith('/') || (await isSandboxDir(sbx, target)))) {
          target = `${target.replace(/\/+$/, '')}/${basename(from.path)}`
        }
        // Passed as an async iterable: the SDK pulls one chunk at a time, as the socket takes them.
        await sbx.files.write(target, input as AsyncIterable<Buffer>)
        return
      }
      throw new InvalidArgumentError('invalid_argument', `expected one side to be ID:/abs/path and the other local, got "${src}" and "${dst}"`)
    })
}

async function isLocalDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory()
  } catch {
    return false
  }
}

async function isSandboxDir(sbx: Sandbox, path: string): Promise<boolean> {
  try {
    return (await sbx.files.getInfo(path)).type === 'dir'
  } catch {
    return false
  }
}

/** Our stdout as a pipeline target that is not closed at the end (closing fd 1 would lose later output). */
function stdoutKeptOpen(): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      if (process.stdout.write(chunk)) done()
      else process.stdout.once('drain', () => done())
    },
  })
}
