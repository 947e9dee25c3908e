/**
 * The `base` template through the unmodified `e2b` SDK: what E2B's base offers (bash, git, curl,
 * sudo for `user` without a password, python, procps, ca-certificates), and that sudo gains no
 * more than a root command of the API has: the same capabilities, the same seccomp filter, no
 * host mounts, no raw devices.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { CommandExitError, Sandbox } from 'e2b'
import { e2bSuite } from './helpers/e2b-env.js'
import { skipReason, templatesDir } from './helpers/stack.js'

const skip =
  skipReason() ??
  (existsSync(join(templatesDir, 'base', 'current', 'template.json')) ? null : `no base template in ${templatesDir}: run scripts/setup.sh`)

/** The capability and seccomp lines of /proc/self/status, as the process that reads it has them. */
const statusLines = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status"

/** CAP_SYS_ADMIN's bit in the masks of /proc/self/status. */
const sysAdminBit = 1n << 21n

function field(status: string, name: string): string {
  const line = status.split('\n').find((l) => l.startsWith(`${name}:`))
  assert.ok(line, `expected a ${name} line in:\n${status}`)
  return line.slice(name.length + 1).trim()
}

describe('e2b SDK: the base template', { skip: skip ?? false }, () => {
  const suite = e2bSuite({ sandbox: true })

  test('Sandbox.create() gets base', async () => {
    assert.equal((await suite.sbx.getInfo()).templateId, 'base')
  })

  test("E2B base's tools are there", async () => {
    const run = async (cmd: string) => (await suite.sbx.commands.run(cmd)).stdout
    assert.match(await run('bash --version | head -n1'), /^GNU bash, version 5\./)
    assert.match(await run('git --version'), /^git version 2\.\d+/)
    assert.match(await run('curl --version | head -n1'), /^curl 7\.\d+/)
    assert.match(await run('python --version'), /^Python 3\.11\./)
    assert.match(await run('python3 -c "import ssl; print(ssl.OPENSSL_VERSION)"'), /^OpenSSL 3\./)
    assert.equal(await run('sleep 30 & ps -o comm= -p $!; kill $!'), 'sleep\n')
    assert.match(await run('ls /etc/ssl/certs/ca-certificates.crt && grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt'), /ca-certificates\.crt\n[1-9]\d+\n$/)
  })

  test('user may use sudo without a password', async () => {
    assert.equal((await suite.sbx.commands.run('id -un')).stdout, 'user\n')
    const ok = await suite.sbx.commands.run('sudo -n true')
    assert.equal(ok.exitCode, 0)
    assert.equal((await suite.sbx.commands.run('sudo -n id -u')).stdout, '0\n')
    // What sudo makes is root's: a file only root may write.
    await suite.sbx.commands.run('sudo -n sh -c "echo made > /etc/made-by-sudo"')
    assert.equal((await suite.sbx.commands.run('stat -c %U:%a /etc/made-by-sudo && cat /etc/made-by-sudo')).stdout, 'root:644\nmade\n')
    // Without sudo, user is still user.
    const denied = await suite.sbx.commands.run('touch /etc/not-mine').catch((e: unknown) => e)
    assert.ok(denied instanceof CommandExitError, `expected CommandExitError, got ${String(denied)}`)
    assert.match(denied.stderr, /Permission denied/)
  })

  test('sudo gains what a root command has, no more: same capabilities, same seccomp filter', async () => {
    const asRoot = (await suite.sbx.commands.run(statusLines, { user: 'root' })).stdout
    const viaSudo = (await suite.sbx.commands.run(`sudo -n sh -c "${statusLines}"`)).stdout
    for (const name of ['CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'CapInh', 'Seccomp', 'Seccomp_filters']) {
      assert.equal(field(viaSudo, name), field(asRoot, name), `${name} under sudo and as API root`)
    }
    assert.equal(field(viaSudo, 'Seccomp'), '2', 'a seccomp filter is loaded')
    for (const name of ['CapPrm', 'CapEff', 'CapBnd']) {
      assert.equal(BigInt(`0x${field(viaSudo, name)}`) & sysAdminBit, 0n, `${name} must not hold CAP_SYS_ADMIN`)
    }
    // And the sandbox's PID 1 (the init, which held CAP_SYS_ADMIN only to load that filter) has dropped it.
    const init = (await suite.sbx.commands.run("grep -E '^(CapPrm|CapEff|CapBnd):' /proc/1/status", { user: 'root' })).stdout
    for (const name of ['CapPrm', 'CapEff', 'CapBnd']) {
      assert.equal(BigInt(`0x${field(init, name)}`) & sysAdminBit, 0n, `the init's ${name} must not hold CAP_SYS_ADMIN`)
    }
  })

  test('after sudo: no mounts, no raw devices, no host', async () => {
    const tries = async (cmd: string) => {
      const r = await suite.sbx.commands.run(`sudo -n sh -c '${cmd}'`).catch((e: unknown) => e)
      assert.ok(r instanceof CommandExitError, `expected "${cmd}" to fail under sudo, got ${String((r as { stdout?: string }).stdout)}`)
      return r
    }
    await tries('mount -t tmpfs none /mnt')
    await tries('mount --bind / /mnt')
    await tries('umount /proc')
    // CAP_MKNOD makes a node of the host's disk, and of /dev/mem, in /dev (a tmpfs without nodev,
    // unlike the root): only the devices cgroup stands between the node and the device.
    const disk = (await readdir('/sys/dev/block')).find((d) => /^\d+:\d+$/.test(d) && !d.startsWith('7:'))
    assert.ok(disk, 'expected a block device on the host')
    for (const [node, kind] of [['hostdisk', `b ${disk.replace(':', ' ')}`], ['hostmem', 'c 1 1']] as const) {
      const r = (await tries(`mknod /dev/${node} ${kind} && echo MADE && head -c 1 /dev/${node}`)) as CommandExitError
      assert.equal(r.stdout, 'MADE\n', `the node ${node} is made: ${r.stderr}`)
      assert.match(r.stderr, /Operation not permitted/, `opening ${node} is refused`)
    }
    await tries('unshare -m true')
    await tries('echo 1 > /proc/sys/kernel/sysrq')
    // No host file system anywhere in the mount table: the root is the sandbox's overlay.
    const mounts = (await suite.sbx.commands.run('sudo -n cat /proc/self/mountinfo')).stdout
    const root = mounts.split('\n').find((l) => l.split(' ')[4] === '/')
    assert.match(root ?? '', / - overlay overlay /, `the root is an overlay:\n${mounts}`)
  })

  test('other templates keep no_new_privs: debian has it set, base not', async () => {
    assert.equal(field((await suite.sbx.commands.run(statusLines)).stdout, 'NoNewPrivs'), '0')
    const debian = await Sandbox.create('debian')
    try {
      assert.equal(field((await debian.commands.run(statusLines, { user: 'root' })).stdout, 'NoNewPrivs'), '1')
      assert.match((await debian.commands.run('grep " / / " /proc/self/mountinfo')).stdout, /nosuid/)
    } finally {
      await debian.kill()
    }
  })
})
