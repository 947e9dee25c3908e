/**
 * Docker's CLI as a baseline of whole processes: `docker exec` into an idle container and
 * `docker run --rm`, when an engine answers. Nothing is pulled: a local busybox-like image is used,
 * else one is made with `docker import` from a tar of the host's static busybox (and removed after).
 */
import { mkdtemp, rm, symlink, copyFile, mkdir } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'

/** Images tried, smallest first; only ones already present are used. */
const candidateImages = ['busybox:latest', 'alpine:latest', 'debian:bookworm-slim', 'debian:latest']
/** The image this benchmark makes when none is there. */
const importedImage = 'sandstorm-bench-busybox:latest'

/** A Docker engine, its client and an image to time. */
export interface DockerCli {
  /** The client binary (Debian's docker.io client where present). */
  binary: string
  image: string
  /** Engine version and where the image came from, for the report. */
  describe: string
  /** Starts a container that idles (for `docker exec`); resolves with its id. */
  startIdle(): Promise<string>
  /** Removes what was made here; resolves with what could not be removed. */
  close(): Promise<string[]>
}

/** The client to use: Debian's /usr/bin/docker where it is installed, else `docker` on PATH. */
function clientBinary(): string {
  return existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker'
}

/** Finds an engine and an image, making one from busybox if needed; or says why there is none. */
export async function findDockerCli(): Promise<DockerCli | { reason: string }> {
  const binary = clientBinary()
  const info = await execa(binary, ['version', '--format', '{{.Server.Version}}'], { reject: false, timeout: 10_000 }).catch(() => null)
  if (!info || info.exitCode !== 0) return { reason: `\`${binary} version\` found no Docker engine answering` }
  let image: string | undefined
  for (const candidate of candidateImages) {
    if ((await execa(binary, ['image', 'inspect', candidate], { reject: false })).exitCode === 0) {
      image = candidate
      break
    }
  }
  let imported = false
  if (!image) {
    const made = await importBusybox(binary)
    if ('reason' in made) return made
    image = importedImage
    imported = true
  }
  const found = image
  const containers = new Set<string>()
  return {
    binary,
    image: found,
    describe: `engine ${String(info.stdout).trim()}, client ${binary}, image ${found}${imported ? ' (made here with `docker import` of a tar holding the host\'s static busybox; no local image was there and nothing is pulled)' : ' (found locally)'}, containers with --network none`,
    async startIdle() {
      const r = await execa(binary, ['run', '-d', '--network', 'none', found, 'sleep', '100000'], { reject: false })
      if (r.exitCode !== 0) throw new Error(`docker run -d expected exit 0, got ${r.exitCode}: ${String(r.stderr).trim()}`)
      const id = String(r.stdout).trim()
      containers.add(id)
      return id
    },
    async close() {
      const left: string[] = []
      for (const id of containers) {
        if ((await execa(binary, ['rm', '-f', id], { reject: false })).exitCode !== 0) left.push(`docker container ${id}`)
      }
      if (imported && (await execa(binary, ['image', 'rm', importedImage], { reject: false })).exitCode !== 0) left.push(`docker image ${importedImage}`)
      return left
    },
  }
}

/** `docker import` of a root holding /bin/busybox and the applets the benchmark runs. */
async function importBusybox(binary: string): Promise<{ ok: true } | { reason: string }> {
  if (!existsSync('/bin/busybox')) return { reason: 'Docker answers but has no busybox-like image, and /bin/busybox is missing to make one (nothing is pulled)' }
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-bench-docker-'))
  try {
    const root = join(dir, 'root')
    await mkdir(join(root, 'bin'), { recursive: true })
    await copyFile('/bin/busybox', join(root, 'bin', 'busybox'))
    for (const applet of ['sh', 'true', 'sleep']) await symlink('busybox', join(root, 'bin', applet))
    const tar = join(dir, 'root.tar')
    await execa('tar', ['-C', root, '-cf', tar, '.'])
    const r = await execa(binary, ['import', tar, importedImage], { reject: false })
    if (r.exitCode !== 0) return { reason: `docker import of a busybox root failed: ${String(r.stderr).trim()}` }
    return { ok: true }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
