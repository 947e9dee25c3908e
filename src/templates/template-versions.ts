/**
 * The versions of templates on disk: each `<dir>/<name>/<version>/template.json`, read once per
 * file and checked with its schema, and `<dir>/<name>/current`, switched by a rename.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, readlinkSync, statSync } from 'node:fs'
import { readdir, rename, symlink, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { SandstormError, templateStartSchema, type TemplateInfo } from '../shared/index.js'
import { templateNamePattern } from './template-name.js'

/** template.json: a TemplateInfo and the read-only binds of the template. */
export const storedTemplateSchema = z.object({
  name: z.string(),
  version: z.number().int().positive(),
  description: z.string(),
  sizeBytes: z.number().int().nonnegative(),
  buildMs: z.number().nonnegative(),
  builtAt: z.string(),
  defaults: z.object({ memoryMiB: z.number().int().positive(), cpus: z.number().positive(), diskMiB: z.number().int().positive().optional() }),
  readonlyBinds: z.array(z.object({ source: z.string(), target: z.string() })).default([]),
  /** A golden version's root: layers stacked over its base (absent: the version's own rootfs/). */
  lowerDirs: z.array(z.string()).optional(),
  baseTemplate: z.string().optional(),
  snapshotId: z.string().optional(),
  start: templateStartSchema.optional(),
  allowSetuid: z.boolean().optional(),
  source: z.object({ kind: z.enum(['image', 'archive', 'dockerfile']), reference: z.string().optional(), digest: z.string().optional(), template: z.string().optional() }).optional(),
  config: z
    .object({
      env: z.record(z.string(), z.string()),
      workingDir: z.string().optional(),
      user: z.string().optional(),
      entrypoint: z.array(z.string()).optional(),
      cmd: z.array(z.string()).optional(),
      exposedPorts: z.array(z.number()),
      labels: z.record(z.string(), z.string()),
    })
    .optional(),
  /** The image layers (ids in the layer store) the version stands on, bottom first. */
  layers: z.array(z.string()).optional(),
  /** The recipe's fingerprint of the repository files in the tree (not part of TemplateInfo). */
  fingerprint: z.string().optional(),
})
export type StoredTemplate = z.infer<typeof storedTemplateSchema>

export const versionPattern = /^[1-9][0-9]*$/

/** One version as read: its template.json and its directory. */
export interface VersionFiles {
  stored: StoredTemplate
  versionDir: string
}

/** Reading and switching the versions of templates in `dir`. */
export interface TemplateVersions {
  /** The current version of `name`, or null if none is built (synchronous: it is on a create's path). */
  readCurrent(name: string): VersionFiles | null
  /** One version of `name` as its template.json records it (a copy: callers may change it). */
  readVersion(name: string, target: string): VersionFiles
  readVersionOrNull(name: string, target: string): VersionFiles | null
  /** Every version of every template, as stored (unreadable ones skipped). */
  allVersions(): Promise<StoredTemplate[]>
  /** Makes `version` the current one of `name`, atomically. */
  switchCurrent(name: string, version: number): Promise<void>
}

/** The template versions under `dir`. */
export function createTemplateVersions(dir: string): TemplateVersions {
  /**
   * Parsed template.json files by version dir. A version is written once (in a temporary dir,
   * renamed into place), so a file whose identity (inode, size, mtime) is unchanged is not read
   * again: every create lists the templates and resolves one. A number used again after a remove
   * is a new file, and is read anew.
   */
  const parsedVersions = new Map<string, { identity: string; stored: StoredTemplate }>()

  /**
   * The current version of `name`, or null if none is built. Synchronous calls (a readlink and a
   * stat, microseconds each): on a create's path, async ones wait their turn in libuv's pool.
   */
  function readCurrent(name: string): { stored: StoredTemplate; versionDir: string } | null {
    let target: string
    try {
      target = readlinkSync(join(dir, name, 'current'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
    if (!versionPattern.test(target)) {
      throw new SandstormError('internal', `template "${name}": expected "current" to point at a version number, found "${target}"`)
    }
    return readVersion(name, target)
  }

  /** One version of `name` as its template.json records it (a copy: callers may change it). */
  function readVersion(name: string, target: string): { stored: StoredTemplate; versionDir: string } {
    const versionDir = join(dir, name, target)
    const file = join(versionDir, 'template.json')
    const st = statSync(file)
    const identity = `${st.ino}:${st.size}:${st.mtimeMs}`
    const known = parsedVersions.get(versionDir)
    if (known?.identity === identity) return { stored: structuredClone(known.stored), versionDir }
    let json: unknown
    try {
      json = JSON.parse(readFileSync(file, 'utf8'))
    } catch (err) {
      throw new SandstormError('internal', `template "${name}" v${target}: expected JSON in template.json, got unparsable text`, { cause: err })
    }
    const parsed = storedTemplateSchema.safeParse(json)
    if (!parsed.success) {
      throw new SandstormError('internal', `template "${name}" v${target}: template.json is not valid: ${parsed.error.message}`)
    }
    parsedVersions.set(versionDir, { identity, stored: structuredClone(parsed.data) })
    return { stored: parsed.data, versionDir }
  }

  function readVersionOrNull(name: string, target: string): { stored: StoredTemplate; versionDir: string } | null {
    try {
      return readVersion(name, target)
    } catch {
      return null
    }
  }

  async function switchCurrent(name: string, version: number): Promise<void> {
    const staged = join(dir, name, `.current-${randomBytes(4).toString('hex')}`)
    await symlink(String(version), staged)
    try {
      await rename(staged, join(dir, name, 'current'))
    } catch (err) {
      await unlink(staged).catch(() => undefined)
      throw err
    }
  }

  /** Every version of every template, as stored (unreadable ones skipped). */
  async function allVersions(): Promise<StoredTemplate[]> {
    const out: StoredTemplate[] = []
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (!templateNamePattern.test(entry.name) || !(entry.isDirectory() || entry.isSymbolicLink())) continue
      for (const version of await versionsOf(join(dir, entry.name)).catch(() => [])) {
        const found = readVersionOrNull(entry.name, String(version))
        if (found) out.push(found.stored)
      }
    }
    return out
  }

  return { readCurrent, readVersion, readVersionOrNull, allVersions, switchCurrent }
}

/** What a caller is told of a version (its tree and layers are the store's own business). */
export function toInfo(stored: StoredTemplate): TemplateInfo {
  const { readonlyBinds: _binds, lowerDirs: _lowerDirs, fingerprint: _fingerprint, layers: _layers, ...info } = stored
  return info
}

/** The versions in `nameDir`, oldest first. */
export async function versionsOf(nameDir: string): Promise<number[]> {
  return (await readdir(nameDir)).filter((e) => versionPattern.test(e)).map(Number).sort((a, b) => a - b)
}

/** One more than the highest version in `nameDir` (older versions stay, for rollback). */
export async function nextVersion(nameDir: string): Promise<number> {
  let highest = 0
  for (const entry of await readdir(nameDir)) {
    if (versionPattern.test(entry)) highest = Math.max(highest, Number(entry))
  }
  return highest + 1
}
