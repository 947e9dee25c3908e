/**
 * A data dir's one owner, and the files in it that hold secrets. `sandstorm up`, `server` and
 * `agent` take the data dir before they adopt, reap or destroy anything in it: a second one on the
 * same data dir exits at once, naming the first, having touched nothing.
 */
import { createHash } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { SandstormError } from './errors.js'

/** The data dir held by this process until release. */
export interface DataDirLock {
  release(): Promise<void>
}

/**
 * Takes `dataDir` for this process (`role` names it to a second one). The lock is an abstract
 * unix socket named for the data dir's real path: binding it is atomic, and the kernel lets go of
 * it when the process dies, so no stale lock is ever left behind.
 */
export async function lockDataDir(dataDir: string, role: string): Promise<DataDirLock> {
  prepareDataDir(dataDir)
  const name = `\0sandstorm-owner-${createHash('sha256').update(realpathSync(dataDir)).digest('hex').slice(0, 40)}`
  const owner = JSON.stringify({ pid: process.pid, role, since: new Date().toISOString() })
  const server: Server = createServer((socket) => socket.end(owner))
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ path: name }, () => resolve())
    })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    const holder = await ownerOf(name)
    const who = holder ? `${holder.role} (pid ${holder.pid}, since ${holder.since})` : 'another Sandstorm process'
    throw new SandstormError('failed_precondition', `the data dir ${dataDir} is in use by ${who}: stop it first, or give this one another --data-dir`)
  }
  server.unref()
  return { release: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

async function ownerOf(name: string): Promise<{ pid: number; role: string; since: string } | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ path: name })
    let text = ''
    socket.setTimeout(2000, () => socket.destroy())
    socket.setEncoding('utf8').on('data', (d: string) => (text += d))
    socket.on('close', () => {
      try {
        resolve(JSON.parse(text) as { pid: number; role: string; since: string })
      } catch {
        resolve(undefined)
      }
    })
    socket.on('error', () => undefined)
  })
}

/**
 * Makes the data dir if needed, mode 0700 and owned by this process's user: it holds the catalog,
 * keys and every sandbox's files. A looser mode is tightened; another owner is refused.
 */
export function prepareDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const st = statSync(dataDir)
  const uid = process.getuid?.()
  if (uid !== undefined && st.uid !== uid) {
    throw new SandstormError('failed_precondition', `the data dir ${dataDir} belongs to uid ${st.uid}: expected it to be this user's (uid ${uid}), as it holds keys and sandboxes`)
  }
  if ((st.mode & 0o077) !== 0) chmodSync(dataDir, 0o700)
}

/**
 * Reads a file that holds a secret, checked as it is loaded: this user's, mode 0600 (no access by
 * group or others), and at least `minBytes` long once trimmed. Anything else is refused with what
 * to do about it. Undefined when the file does not exist (the caller makes one).
 */
export function readSecretFile(path: string, what: string, minBytes: number): string | undefined {
  let st: ReturnType<typeof statSync>
  try {
    st = statSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const uid = process.getuid?.()
  if (uid !== undefined && st.uid !== uid) throw new SandstormError('failed_precondition', `${what} ${path} belongs to uid ${st.uid}: expected this user's (uid ${uid})`)
  if ((st.mode & 0o077) !== 0) {
    throw new SandstormError('failed_precondition', `${what} ${path} has mode ${(st.mode & 0o777).toString(8)}: expected 600, as others could read it (chmod 600 it, or remove it to make a new one)`)
  }
  const text = readFileSync(path, 'utf8').trim()
  if (Buffer.byteLength(text) < minBytes) {
    throw new SandstormError('failed_precondition', `${what} ${path} holds ${Buffer.byteLength(text)} bytes: expected at least ${minBytes} (remove it to make a new one)`)
  }
  return text
}
