/**
 * A Dockerfile cannot make the server probe its own ports: `FROM 127.0.0.1:<port>/x` names a
 * registry on the server's host, which is refused before any request unless the operator listed
 * it as an insecure registry. Two HTTP servers on loopback stand in for registries and count what
 * reaches them; one is listed, one is not.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { buildTemplate, listTemplates } from '@sandstorm/sdk/node'
import { httpStatusOf } from '../src/shared/index.js'
import { scratchTemplatesDir, skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason()

/** An HTTP server on 127.0.0.1 that answers 404 to everything and counts the requests. */
async function countingServer(): Promise<{ host: string; requests: () => number; server: Server }> {
  let requests = 0
  const server = createServer((_req, res) => {
    requests++
    res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests, server }
}

describe('FROM a registry on the server\'s own host', { skip: skip ?? false }, () => {
  let stack: Stack
  let templates: { dir: string; remove(): Promise<void> }
  let ctx: string
  let unlisted: Awaited<ReturnType<typeof countingServer>>
  let listed: Awaited<ReturnType<typeof countingServer>>

  before(async () => {
    ctx = await mkdtemp(join(tmpdir(), 'sandstorm-registry-on-host-'))
    unlisted = await countingServer()
    listed = await countingServer()
    await writeFile(join(ctx, 'Dockerfile.unlisted'), `FROM ${unlisted.host}/x\nRUN true\n`)
    await writeFile(join(ctx, 'Dockerfile.listed'), `FROM ${listed.host}/x\nRUN true\n`)
    templates = await scratchTemplatesDir()
    stack = await startStack({ templatesDir: templates.dir, insecureRegistries: [listed.host] })
  })
  after(async () => {
    await stack?.close()
    await templates?.remove()
    unlisted?.server.close()
    listed?.server.close()
    await rm(ctx, { recursive: true, force: true })
  })

  it('is refused with a 403 naming the registry and the flag that allows it, and never asked', async () => {
    await assert.rejects(buildTemplate('from-host', { ...stack.conn, context: ctx, dockerfile: 'Dockerfile.unlisted' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'permission_denied', err.message)
      assert.equal(httpStatusOf.permission_denied, 403)
      const host = unlisted.host.replace(/\./g, '\\.')
      assert.match(err.message, new RegExp(`^registry ${host}: refused, 127\\.0\\.0\\.1 is loopback: expected a registry that is not on this host .*sandstorm up --insecure-registry ${host}$`))
      return true
    })
    assert.equal(unlisted.requests(), 0, 'the refused registry was asked')
    assert.ok(!(await listTemplates(stack.conn)).some((t) => t.name === 'from-host'))
  })

  it('is asked when the operator lists it as an insecure registry', async () => {
    await assert.rejects(buildTemplate('from-listed', { ...stack.conn, context: ctx, dockerfile: 'Dockerfile.listed' }), (err: Error & { code?: string }) => {
      // It answers 404 to the manifest: a registry that was reached, with no such image.
      assert.equal(err.code, 'not_found', err.message)
      return true
    })
    assert.ok(listed.requests() > 0, 'the listed registry was not asked')
    assert.equal(unlisted.requests(), 0)
  })
})
