/**
 * A directory as a tar stream (Node only): the build context of a Dockerfile build. Symlinks go
 * as symlinks (never followed); devices, sockets and FIFOs are left out, and so is what the
 * context's `.dockerignore` excludes, as `docker build` does: a `.env` or a key listed there never
 * leaves this machine. The server applies the same file again to what it receives.
 */
import { constants, createReadStream } from 'node:fs'
import { lstat, open, readdir, readlink } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { Readable } from 'node:stream'
import { pack, type Pack } from 'tar-stream'
import { parseDockerignore, type DockerignoreFilter } from './dockerignore.js'

/** Options of tarDirectory. */
export interface TarDirectoryOptions {
  /** The Dockerfile's path inside the directory: sent even when `.dockerignore` excludes it, as Docker does. @default 'Dockerfile' */
  dockerfile?: string
}

/** The server refuses a larger `.dockerignore`; it is sent as it is, for the server to say so. */
const maxDockerignoreBytes = 1024 * 1024

/** The files under `dir` that `.dockerignore` keeps, as a tar readable by the server's context unpacker. */
export function tarDirectory(dir: string, options: TarDirectoryOptions = {}): ReadableStream<Uint8Array> {
  const tar = pack()
  void selectionOf(dir, options.dockerfile ?? 'Dockerfile').then((filter) => fill(tar, dir, filter)).then(
    () => tar.finalize(),
    (err: unknown) => tar.destroy(err instanceof Error ? err : new Error(String(err))),
  )
  // Through Readable.from: Node 20's toWeb needs a node:stream Readable's highWaterMark, which tar-stream's streamx stream lacks.
  return Readable.toWeb(Readable.from(tar as unknown as AsyncIterable<Uint8Array>)) as unknown as ReadableStream<Uint8Array>
}

/** What goes in the tar: a path, and whether to look inside a directory that is itself left out. */
interface Selection {
  sends(rel: string): boolean
  /** An excluded directory is still walked when something under it may be sent. */
  walks(rel: string): boolean
}

/** The selection of `root/.dockerignore` (everything when there is none, or it is no regular file: the server refuses that). */
async function selectionOf(root: string, dockerfile: string): Promise<Selection> {
  const ignore = await readDockerignore(join(root, '.dockerignore'))
  if (!ignore) return { sends: () => true, walks: () => true }
  // The builder reads these two whatever the file says, so they always go.
  const always = new Set(['.dockerignore', posix.normalize(dockerfile)])
  const sends = (rel: string): boolean => always.has(rel) || !ignore.ignores(rel)
  const walks = (rel: string): boolean => ignore.hasExceptions || [...always].some((a) => a.startsWith(`${rel}/`))
  return { sends, walks }
}

async function readDockerignore(path: string): Promise<DockerignoreFilter | undefined> {
  const st = await lstat(path).catch(() => null)
  if (!st?.isFile() || st.size > maxDockerignoreBytes) return undefined
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    return parseDockerignore(await handle.readFile('utf8'))
  } finally {
    await handle.close()
  }
}

async function fill(tar: Pack, root: string, selection: Selection, rel = ''): Promise<void> {
  const entries = (await readdir(join(root, rel), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))
  for (const entry of entries) {
    const name = rel ? `${rel}/${entry.name}` : entry.name
    const path = join(root, name)
    const st = await lstat(path)
    const common = { name, mode: st.mode & 0o7777, mtime: st.mtime, uid: 0, gid: 0 }
    const sent = selection.sends(name)
    if (st.isDirectory()) {
      // The server makes the parents of what it unpacks: an excluded directory's entry is not needed.
      if (sent) await add(tar, { ...common, type: 'directory' })
      if (sent || selection.walks(name)) await fill(tar, root, selection, name)
    } else if (!sent) {
      continue
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
