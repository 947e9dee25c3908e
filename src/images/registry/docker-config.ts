/** Registry credentials from a Docker client's config.json. */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { SandstormError } from '../../shared/index.js'
import type { RegistryCredentials } from '../contracts.js'

const configSchema = z.object({
  auths: z
    .record(
      z.string(),
      z.object({ auth: z.string().optional(), username: z.string().optional(), password: z.string().optional() }).loose(),
    )
    .optional(),
}).loose()

/** The config.json a Docker client uses: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function defaultDockerConfigPath(): string {
  return join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')
}

/** The keys a Docker client may have stored a registry's entry under. */
function keysOf(registry: string): string[] {
  const keys = [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`, `https://${registry}/v2/`]
  if (registry === 'docker.io') keys.unshift('https://index.docker.io/v1/', 'index.docker.io', 'registry-1.docker.io')
  return keys
}

/**
 * The credentials stored for `registry` (as written in references, `docker.io` for Docker Hub), or
 * undefined when the file or the entry is absent. A file that is not a Docker config is refused.
 */
export async function credentialsFromDockerConfig(registry: string, path = defaultDockerConfigPath()): Promise<RegistryCredentials | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined
    throw SandstormError.from(err)
  }
  let parsed: z.infer<typeof configSchema>
  try {
    parsed = configSchema.parse(JSON.parse(text))
  } catch {
    throw new SandstormError('invalid_argument', `Docker config ${path}: expected JSON with "auths": {"<registry>": {"auth": "<base64 user:password>"}}, got something else`)
  }
  const auths = parsed.auths ?? {}
  for (const key of keysOf(registry)) {
    const entry = auths[key]
    if (!entry) continue
    if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password }
    if (entry.auth) {
      const plain = Buffer.from(entry.auth, 'base64').toString('utf8')
      const colon = plain.indexOf(':')
      if (colon <= 0) throw new SandstormError('invalid_argument', `Docker config ${path}: the "auth" of ${key}: expected base64 of user:password, got no colon in it`)
      return { username: plain.slice(0, colon), password: plain.slice(colon + 1) }
    }
  }
  return undefined
}
