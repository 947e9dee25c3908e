/**
 * A directory as a tar stream (Node only): the build context of a Dockerfile build. Symlinks go
 * as symlinks (never followed); devices, sockets and FIFOs are left out, as `docker build` does.
 */
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pack, type Pack } from 'tar-stream'

/** The files under `dir`, as a tar readable by the server's context unpacker. */
export function tarDirectory(dir: string): ReadableStream<Uint8Array> {
  const tar = pack()
  void fill(tar, dir).then(
    () => tar.finalize(),
    (err: unknown) => tar.destroy(err instanceof Error ? err : new Error(String(err))),
  )
  // Through Readable.from: Node 20's toWeb needs a node:stream Readable's highWaterMark, which tar-stream's streamx stream lacks.
  return Readable.toWeb(Readable.from(tar as unknown as AsyncIterable<Uint8Array>)) as unknown as ReadableStream<Uint8Array>
}

async function fill(tar: Pack, root: string, rel = ''): Promise<void> {
  const entries = (await readdir(join(root, rel), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))
  for (const entry of entries) {
    const name = rel ? `${rel}/${entry.name}` : entry.name
    const path = join(root, name)
    const st = await lstat(path)
    const common = { name, mode: st.mode & 0o7777, mtime: st.mtime, uid: 0, gid: 0 }
    if (st.isDirectory()) {
      await add(tar, { ...common, type: 'directory' })
      await fill(tar, root, name)
    } else if (st.isSymbolicLink()) {
      await add(tar, { ...common, type: 'symlink', linkname: await readlink(path) })
    } else if (st.isFile()) {
      await new Promise<void>((resolve, reject) => {
        const sink = tar.entry({ ...common, type: 'file', size: st.size }, (err) => (err ? reject(err) : resolve()))
        createReadStream(path).on('error', reject).pipe(sink)
      })
    }
  }
}

function add(tar: Pack, header: Parameters<Pack['entry']>[0]): Promise<void> {
  return new Promise((resolve, reject) => tar.entry(header, (err) => (err ? reject(err) : resolve())))
}
