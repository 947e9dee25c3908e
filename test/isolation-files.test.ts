/**
 * Symlink escapes through the file API: the attacker plants a link (or a FIFO) inside its sandbox,
 * then asks the API to follow it. Every path must resolve inside the sandbox's own root, the host
 * must stay unchanged, and a path that blocks must not wedge the server.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { AbortError, Sandbox, SandstormSdkError } from '@sandstorm/sdk'
import { fingerprint, sh } from './helpers/sandbox-shell.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'

const skip = skipReason() ?? false

/** Expects `promise` to reject with an SDK error (not hang, not succeed) and returns it. */
async function rejection(promise: Promise<unknown>): Promise<SandstormSdkError> {
  try {
    await promise
  } catch (err) {
    assert.ok(err instanceof SandstormSdkError, `expected an SDK error, got ${String(err)}`)
    return err
  }
  assert.fail('expected the call to fail, and it succeeded')
}

describe('the file API on links an attacker planted', { skip }, () => {
  let stack: Stack
  let sbx: Sandbox
  const tag = randomBytes(6).toString('hex')
  const hostMarker = `/root/sandstorm-files-marker-${tag}`
  const hostSecret = `host-secret-${tag}`

  before(async () => {
    stack = await startStack()
    sbx = await Sandbox.create('debian', { ...stack.conn })
    await writeFile(hostMarker, hostSecret)
    const planted = await sh(sbx, [
      'ln -s /etc/shadow /tmp/shadow-link',
      'ln -s /proc/sys/kernel/core_pattern /tmp/core-link',
      'ln -s / /tmp/root-link',
      'ln -s /root /tmp/home-link',
      'ln -s /proc/1/root /tmp/init-root-link',
      `ln -s ${hostMarker} /tmp/marker-link`,
      'mkfifo /tmp/fifo',
    ].join(' && '))
    assert.equal(planted.exitCode, 0, planted.stderr)
  })

  after(async () => {
    await rm(hostMarker, { force: true })
    await stack?.close()
  })

  it("read through a link to /etc/shadow returns the sandbox's file, not the host's", async () => {
    const own = (await sh(sbx, 'cat /etc/shadow')).stdout
    const host = await readFile('/etc/shadow', 'utf8')
    assert.notEqual(own, host, 'the sandbox and the host must have different /etc/shadow for this test to mean anything')
    assert.equal(await sbx.files.read('/tmp/shadow-link'), own)
    for (const path of ['/tmp/marker-link', `/../../..${hostMarker}`]) {
      const err = await rejection(sbx.files.read(path))
      assert.equal(err.code, 'not_found', `${path}: ${err.message}`)
    }
    // The sandbox's init is not dumpable, so nothing in the sandbox may open its /proc/1/root;
    // what matters is that the host never follows the link on its own side.
    for (const path of ['/tmp/init-root-link/etc/shadow', `/tmp/init-root-link${hostMarker}`, `/proc/1/root${hostMarker}`]) {
      const err = await rejection(sbx.files.read(path))
      assert.equal(err.code, 'permission_denied', `${path}: ${err.message}`)
    }
  })

  it('write through a link to /etc/shadow changes only the sandbox', async () => {
    const before = await fingerprint('/etc/shadow')
    await sbx.files.write('/tmp/shadow-link', 'sandbox-owned\n')
    // Whether the write follows the link or replaces it, the bytes land inside the sandbox.
    assert.equal((await sh(sbx, 'cat /tmp/shadow-link')).stdout, 'sandbox-owned\n')
    assert.deepEqual(await fingerprint('/etc/shadow'), before)
  })

  it('write through a link to /proc/sys/kernel/core_pattern leaves the host alone', async () => {
    const before = await fingerprint('/proc/sys/kernel/core_pattern')
    // The write may replace the link itself (an upload is renamed over its target), which is
    // harmless; what must not happen is the kernel setting changing.
    await sbx.files.write('/tmp/core-link', '|/tmp/pwn %p').catch(() => undefined)
    await rejection(sbx.files.write('/proc/sys/kernel/core_pattern', '|/tmp/pwn %p'))
    assert.deepEqual(await fingerprint('/proc/sys/kernel/core_pattern'), before)
  })

  it('a linked directory as a parent stays inside the sandbox', async () => {
    const name = `hostile-${tag}`
    await sbx.files.write(`/tmp/root-link/etc/${name}`, 'planted')
    assert.equal((await rejection(sbx.files.write(`/tmp/init-root-link/tmp/${name}`, 'planted'))).code, 'permission_denied')
    assert.equal((await sh(sbx, `cat /etc/${name}`)).stdout, 'planted')
    assert.ok(!existsSync(`/etc/${name}`), `the write reached the host's /etc/${name}`)
    assert.ok(!existsSync(`/tmp/${name}`), `the write reached the host's /tmp/${name}`)
  })

  it('list, mkdir, rename and remove through links stay inside the sandbox', async () => {
    const markerName = hostMarker.split('/').pop()!
    const newDir = `made-${tag}`

    const listed = (await sbx.files.list('/tmp/home-link')).map((e) => e.name)
    assert.ok(!listed.includes(markerName), `the host's /root shows through: ${listed.join(', ')}`)

    await sbx.files.makeDir(`/tmp/home-link/${newDir}/deeper`)
    assert.ok(!existsSync(`/root/${newDir}`), 'mkdir reached the host')
    assert.equal((await sh(sbx, `[ -d /root/${newDir}/deeper ] && echo inside`)).stdout, 'inside\n')

    const renamed = await rejection(sbx.files.rename(`/tmp/home-link/${markerName}`, '/tmp/stolen'))
    assert.equal(renamed.code, 'not_found')
    await sbx.files.rename(`/tmp/home-link/${newDir}`, `/tmp/root-link/${newDir}-moved`)
    assert.ok(!existsSync(`/${newDir}-moved`), 'rename reached the host')

    const removed = await rejection(sbx.files.remove(`/tmp/home-link/${markerName}`))
    assert.equal(removed.code, 'not_found')
    await sbx.files.remove('/tmp/marker-link')
    // A trailing slash makes rm follow the link and empty what it points at: the sandbox's /root.
    await sbx.files.remove('/tmp/home-link/', { recursive: true })
    await sbx.files.remove(`/tmp/root-link/${newDir}-moved`, { recursive: true })
    assert.equal(await readFile(hostMarker, 'utf8'), hostSecret, "the host's marker must survive")
  })

  it("a file helper whose output root floods through /proc/PID/fd/1 fails at its bound, and the helper is gone", async () => {
    // Enough entries that the listing's helper runs long enough to be caught; a watcher, as root
    // in the sandbox, stops each helper of that listing and writes 100 MB into its stdout.
    const setup = await sh(sbx, [
      'mkdir -p /tmp/flooded && cd /tmp/flooded && seq 3000 | xargs touch',
      "cat > /tmp/flood.sh <<'EOS'",
      'while :; do',
      '  for c in /proc/[0-9]*/cmdline; do',
      '    p=${c%/cmdline}; p=${p#/proc/}',
      '    if tr "\\0" " " < $c 2>/dev/null | grep -q "sandstorm-fs /tmp/floode[d]"; then kill -STOP $p; head -c 100000000 /dev/zero > /proc/$p/fd/1; fi',
      '  done',
      'done',
      'EOS',
      'setsid sh /tmp/flood.sh >/dev/null 2>&1 &',
    ].join('\n'))
    assert.equal(setup.exitCode, 0, setup.stderr)
    try {
      let timer: NodeJS.Timeout | undefined
      const listed = Promise.race([
        sbx.files.list('/tmp/flooded').then(() => 'listed', (err: unknown) => err),
        new Promise((resolve) => (timer = setTimeout(() => resolve('no answer in 60 s'), 60_000))),
      ]).finally(() => clearTimeout(timer))
      const err = await listed
      assert.ok(err instanceof SandstormSdkError, `expected the listing to fail at the bound, got ${String(err)}`)
      assert.equal(err.code, 'resource_exhausted', err.message)
      assert.match(err.message, /printed more than 67108864 bytes/)
    } finally {
      await sh(sbx, 'for d in /proc/[0-9]*; do grep -q flood.sh $d/cmdline 2>/dev/null && kill ${d#/proc/}; done; rm -rf /tmp/flooded')
    }
    const left = (await sh(sbx, 'for d in /proc/[0-9]*; do tr "\\0" " " < $d/cmdline 2>/dev/null; echo; done | grep "sandstorm-fs /tmp/floode[d]" || true')).stdout
    assert.equal(left, '', 'the flooded helper was not killed')
  })

  it('a FIFO planted at a path does not wedge the server', async () => {
    const read = await rejection(sbx.files.read('/tmp/fifo', { signal: AbortSignal.timeout(1000) }))
    assert.ok(read instanceof AbortError, `expected AbortError, got ${read.name}: ${read.message}`)
    // A write may block on the FIFO (then the signal ends it) or replace it with a file; it must settle.
    await sbx.files.write('/tmp/fifo', 'data', { signal: AbortSignal.timeout(1000) }).catch((err: unknown) => {
      assert.ok(err instanceof AbortError, `expected AbortError or success, got ${String(err)}`)
    })

    // The server and the sandbox still answer, and the blocked readers and writers were ended
    // (each probe is a round trip through runc, so this waits on the sandbox, not on a clock).
    assert.equal((await sbx.getInfo()).state, 'running')
    let stuck = 'unknown'
    for (let i = 0; i < 100; i++) {
      stuck = (await sh(sbx, 'for d in /proc/[0-9]*; do tr "\\0" " " < $d/cmdline 2>/dev/null; echo; done | grep "tmp/fif[o]" || true')).stdout
      if (stuck === '') break
    }
    assert.equal(stuck, '', 'file operations on the FIFO are still running in the sandbox')
    await sbx.files.write('/tmp/after-fifo', 'fine')
    assert.equal(await sbx.files.read('/tmp/after-fifo'), 'fine')
  })
})
