/**
 * A build context's `.dockerignore`: the paths it excludes are not in the context at all for
 * COPY and ADD, and so change nothing in a step's cache key. The rules are the SDK's
 * parseDockerignore, which the client also applies to the context it uploads: both sides agree.
 */
import { constants } from 'node:fs'
import { lstat, open } from 'node:fs/promises'
import { join } from 'node:path'
import ignoreModule from '@balena/dockerignore'
import { parseDockerignore, type DockerignoreFilter } from '@sandstorm/sdk/node'
import { SandstormError } from '../../shared/index.js'

export { parseDockerignore }

/** Which context paths are excluded. */
export type ContextFilter = DockerignoreFilter

/** @balena/dockerignore's factory: the package is CommonJS (`module.exports = factory`) while its types declare an ES default export. */
export const createIgnore = ignoreModule as unknown as typeof ignoreModule.default

const maxDockerignoreBytes = 1024 * 1024

/** The filter of `contextDir/.dockerignore`, or one that excludes nothing when there is none. */
export async function loadDockerignore(contextDir: string): Promise<ContextFilter> {
  const path = join(contextDir, '.dockerignore')
  const stat = await lstat(path).catch(() => null)
  if (!stat) return parseDockerignore('')
  if (!stat.isFile()) throw new SandstormError('invalid_argument', 'the build context\'s .dockerignore is not a regular file (a symlink is not followed)')
  if (stat.size > maxDockerignoreBytes) throw new SandstormError('invalid_argument', `the build context's .dockerignore is ${stat.size} bytes; expected at most ${maxDockerignoreBytes}`)
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    return parseDockerignore(await handle.readFile('utf8'))
  } finally {
    await handle.close()
  }
}
