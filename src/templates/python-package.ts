/**
 * A Python program kept in the repository as a directory of modules, copied into a template and
 * fingerprinted so that a template built from older files can be told apart (scripts/setup.sh
 * computes the same fingerprint with sha256sum: keep the two in step).
 */
import { createHash } from 'node:crypto'
import { chmod, copyFile, mkdir, readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/**
 * The `.py` files under `dir`, as paths relative to it, sorted bytewise (as `LC_ALL=C sort`).
 * Bytecode caches and dot directories are skipped: they are made by running the code, not part of it.
 */
export async function pythonFilesOf(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.py')) continue
    const rel = join(entry.parentPath, entry.name).slice(dir.length + 1)
    if (rel.split('/').some((part) => part === '__pycache__' || part.startsWith('.'))) continue
    out.push(rel)
  }
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
}

/**
 * sha256 of the manifest `sha256sum` prints for `files` (one `<hex>  <path>` line each), so
 * `cd dir && sha256sum <files in that order> | sha256sum` gives the same hex.
 */
export async function fingerprintOf(dir: string, files: readonly string[]): Promise<string> {
  let manifest = ''
  for (const rel of files) {
    const digest = createHash('sha256').update(await readFile(join(dir, rel))).digest('hex')
    manifest += `${digest}  ${rel}\n`
  }
  return createHash('sha256').update(manifest).digest('hex')
}

/** Copies the `.py` files of `source` into `target` (made if missing), world-readable; returns their paths. */
export async function copyPythonFiles(source: string, target: string): Promise<string[]> {
  const files = await pythonFilesOf(source)
  for (const rel of files) {
    const to = join(target, rel)
    await mkdir(dirname(to), { recursive: true, mode: 0o755 })
    await copyFile(join(source, rel), to)
    await chmod(to, 0o644)
  }
  return files
}
