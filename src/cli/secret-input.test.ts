import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { startFakeApi } from '@sandstorm/sdk/testing'
import { runCli, type Ran } from './cli-run.fixture.js'

/** The CLI with `env`, `input` on its stdin. */
const sandstorm = (args: string[], env: Record<string, string>, input?: string): Promise<Ran> => runCli(args, env, input)

test('the API key comes from --api-key-file, over $SANDSTORM_API_KEY; --api-key still works', async () => {
  const fake = await startFakeApi()
  const dir = await mkdtemp(join(tmpdir(), 'sandstorm-key-'))
  try {
    await writeFile(join(dir, 'key'), `${fake.apiKey}\n`, { mode: 0o600 })
    const env = { SANDSTORM_URL: fake.url, SANDSTORM_API_KEY: 'not-the-key' }
    const fromFile = await sandstorm(['--api-key-file', join(dir, 'key'), 'ls', '--json'], env)
    assert.deepEqual([fromFile.code, fromFile.stdout.trim()], [0, '[]'], fromFile.stderr)
    const fromArgv = await sandstorm(['--api-key', fake.apiKey, 'ls', '--json'], env)
    assert.equal(fromArgv.code, 0, fromArgv.stderr)
    const both = await sandstorm(['--api-key', fake.apiKey, '--api-key-file', join(dir, 'key'), 'ls'], env)
    assert.deepEqual([both.code, both.stderr], [2, 'sandstorm: --api-key and --api-key-file: expected one of them, got both\n'])
  } finally {
    await rm(dir, { recursive: true, force: true })
    await fake.close()
  }
})

test('registry credentials come from --registry-auth-stdin or $SANDSTORM_REGISTRY_AUTH; --registry-auth still works', async () => {
  const bodies: unknown[] = []
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString()))
      res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(`${JSON.stringify({ type: 'done', template: { name: 't', version: 1, buildMs: 5 } })}\n`)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const env = { SANDSTORM_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, SANDSTORM_API_KEY: 'k' }
  try {
    const build = ['template', 'build', 't', '--image', 'registry.local/app']
    for (const [args, extraEnv, input] of [
      [['--registry-auth-stdin'], {}, 'robot:pass word:with colon\n'],
      [[], { SANDSTORM_REGISTRY_AUTH: 'env-user:env-pass' }, undefined],
      [['--registry-auth', 'argv-user:argv-pass'], { SANDSTORM_REGISTRY_AUTH: 'env-user:env-pass' }, undefined],
      [[], {}, undefined],
    ] as const) {
      const ran = await sandstorm([...build, ...args], { ...env, ...extraEnv }, input)
      assert.equal(ran.code, 0, ran.stderr)
    }
    assert.deepEqual(
      bodies.map((b) => (b as { registryAuth?: unknown }).registryAuth),
      [{ username: 'robot', password: 'pass word:with colon' }, { username: 'env-user', password: 'env-pass' }, { username: 'argv-user', password: 'argv-pass' }, undefined],
    )
    const both = await sandstorm([...build, '--registry-auth', 'a:b', '--registry-auth-stdin'], env, 'c:d\n')
    assert.equal(both.code, 2, both.stderr)
  } finally {
    server.closeAllConnections()
    server.close()
  }
})

test('the help of each secret flag says that argv is visible to other local users', async () => {
  const root = await sandstorm(['--help'], {})
  assert.match(root.stdout.replace(/\s+/g, ' '), /--api-key <key> API key .*argv is visible to other local users.*--api-key-file <path>/)
  const build = await sandstorm(['template', 'build', '--help'], {})
  assert.match(build.stdout.replace(/\s+/g, ' '), /--registry-auth <user:password> .*argv is visible to other local users.*--registry-auth-stdin/)
})
