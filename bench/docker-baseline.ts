/** The create baseline when a Docker engine answers: `docker run --rm -d` of a busybox-like image. */
import { execa } from 'execa'
import { timeChild } from './bare-runc.js'

/** Images tried, smallest first; only ones already present are used (nothing is pulled). */
const candidateImages = ['busybox:latest', 'alpine:latest']

/** A Docker engine with a usable local image, ready to time `docker run`. */
export interface DockerBaseline {
  image: string
  /** Starts a detached container; resolves with its id and how long `docker run --rm -d` took. */
  run(): Promise<{ ms: number; id: string }>
  /** Removes a container started here. */
  remove(id: string): Promise<void>
  /** Removes every container started here and not yet removed. */
  close(): Promise<void>
}

/** Finds a Docker engine and a local busybox-like image, or says why there is none. */
export async function findDockerBaseline(): Promise<DockerBaseline | { reason: string }> {
  const info = await execa('docker', ['info'], { reject: false, timeout: 10_000 }).catch(() => null)
  if (!info || info.exitCode !== 0) return { reason: '`docker info` failed: no Docker engine answers' }
  let image: string | undefined
  for (const candidate of candidateImages) {
    if ((await execa('docker', ['image', 'inspect', candidate], { reject: false })).exitCode === 0) {
      image = candidate
      break
    }
  }
  if (!image) return { reason: `Docker answers but has none of ${candidateImages.join(', ')} locally (the benchmark pulls nothing)` }
  const found = image
  const live = new Set<string>()
  const remove = async (id: string) => {
    await execa('docker', ['rm', '-f', id], { reject: false })
    live.delete(id)
  }
  return {
    image: found,
    async run() {
      const t = await timeChild('docker', ['run', '--rm', '-d', found, 'sleep', '1000'])
      if (t.exitCode !== 0) throw new Error(`docker run expected exit 0, got ${t.exitCode}: ${t.stderr.trim()}`)
      const id = t.stdout.trim()
      live.add(id)
      return { ms: t.ms, id }
    },
    remove,
    async close() {
      for (const id of [...live]) await remove(id)
    },
  }
}
