import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { test } from 'node:test'
import { extract } from 'tar-stream'
import { tarDirectory, type TarDirectoryOptions } from './build-context.js'

/** The entries of the tar that tarDirectory makes of `dir`: name to content ('' for a directory). */
async function tarEntries(dir: string, options?: TarDirectoryOptions): Promise<Map<string, string>> {
  const entries = new Map<string, string>()
  const ex = extract()
  Readable.fromWeb(tarDirectory(dir, options) as WebReadableStream<Uint8Array>).pipe(ex as unknown as NodeJS.WritableStream)
  for await (const entry of ex) {
    const parts: Buffer[] = []
    for await (const chunk of entry) parts.push(chunk as Buffer)
    entries.set(entry.header.name, Buffer.concat(parts).toString())
  }
  return entries
}

test('a build context leaves out what its .dockerignore excludes, but not the Dockerfile, .dockerignore or an exception', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-context-'))
  try {
    await writeFile(join(dir, '.dockerignore'), '# kept on this machine\n.env\n/logs/\n*.tmp\n!keep.tmp\nbuild\nDockerfile\n')
    await writeFile(join(dir, '.env'), 'API_TOKEN=secret')
    await writeFile(join(dir, 'app.js'), 'app')
    await writeFile(join(dir, 'x.tmp'), 'x')
    await writeFile(join(dir, 'keep.tmp'), 'k')
    await writeFile(join(dir, 'Dockerfile'), 'FROM debian\n')
    await mkdir(join(dir, 'logs'))
    await writeFile(join(dir, 'logs', 'a.log'), 'log')
    await mkdir(join(dir, 'build'))
    await writeFile(join(dir, 'build', 'Dockerfile'), 'FROM alpine\n')
    await writeFile(join(dir, 'build', 'out.bin'), 'bin')
    await mkdir(join(dir, 'src'))
    await writeFile(join(dir, 'src', '.env'), 'nested')

    const sent = await tarEntries(dir)
    assert.deepEqual([...sent.keys()].sort(), ['.dockerignore', 'Dockerfile', 'app.js', 'keep.tmp', 'src', 'src/.env'])
    assert.ok(![...sent.values()].some((content) => content.includes('API_TOKEN')))
    // A Dockerfile in an excluded directory goes, alone of that directory.
    const other = await tarEntries(dir, { dockerfile: './build/Dockerfile' })
    assert.deepEqual([...other.keys()].sort(), ['.dockerignore', 'app.js', 'build/Dockerfile', 'keep.tmp', 'src', 'src/.env'])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a build context without .dockerignore is sent whole', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-context-'))
  try {
    await writeFile(join(dir, '.env'), 'E=1')
    await mkdir(join(dir, 'sub'))
    await writeFile(join(dir, 'sub', 'f'), 'f')
    assert.deepEqual([...(await tarEntries(dir)).keys()].sort(), ['.env', 'sub', 'sub/f'])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
