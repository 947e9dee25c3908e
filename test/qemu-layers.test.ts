/**
 * qemu guests from a root of several layers, as a template built from an image has: three layers
 * made here by hand (a static-busybox root with /etc/passwd and a symlink for /tmp; one that adds a file, whites out a
 * file below with a 0/0 char device and makes a directory opaque; one with a user's home, a setuid
 * file and a symlink out of the tree). The guest's ext4 image is read with debugfs, then a VM boots
 * over it through the backend (the guest agent is the bundled one: the image has none, nor a libc),
 * runs commands as root and as the image's user, and is saved and cloned as a golden machine.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execa } from 'execa'
import { createQemuBackend, guestCacheKey, type MachineImage, type QemuBackend, type SandboxSpec } from '../src/runtime/index.js'
import { buildGuest, defaultBootDir, guestArtifacts } from '../src/runtime/qemu/guest-build.js'
import { withMergedLayers } from '../src/runtime/qemu/layer-root.js'
import { buildTemplate, Sandbox } from '@sandstorm/sdk'
import { newId } from '../src/shared/index.js'
import { createTemplateStore } from '../src/templates/index.js'
import { pushTestImage } from './helpers/oci-images.js'
import { sharedGuestDir } from './helpers/qemu-guest.js'
import { registryToolsMissing, startRegistry, type TestRegistry } from './helpers/registry.js'
import { skipReason, startStack, templatesDir, type Stack } from './helpers/stack.js'

function qemuSkipReason(): string | false {
  const reason = skipReason()
  if (reason) return reason
  if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86 is not installed: run scripts/setup.sh'
  if (!existsSync('/usr/sbin/qemu-ga')) return 'qemu-guest-agent is not installed on the host: run scripts/setup.sh'
  return false
}

const skip = qemuSkipReason()
const appUid = 1000

/** The three layers, topmost first, under `dir`. */
async function makeLayers(dir: string): Promise<string[]> {
  const [l1, l2, l3] = ['base', 'changes', 'app'].map((n) => join(dir, n)) as [string, string, string]
  // Layer 1: busybox and its applets, users, files the layers above change. No /proc, /dev, /tmp, /run.
  await mkdir(join(l1, 'bin'), { recursive: true })
  await execa('cp', ['/bin/busybox', join(l1, 'bin', 'busybox')])
  for (const applet of ['sh', 'cat', 'ls', 'id', 'readlink', 'stat', 'echo', 'sleep', 'date', 'head']) await symlink('busybox', join(l1, 'bin', applet))
  await mkdir(join(l1, 'etc'))
  // Something by a mount point's name that is no directory: the guest's /tmp must be one all the same.
  await symlink('/var/tmp', join(l1, 'tmp'))
  await writeFile(join(l1, 'etc', 'passwd'), `root:x:0:0:root:/root:/bin/sh\napp:x:${appUid}:${appUid}:app:/home/app:/bin/sh\n`)
  await writeFile(join(l1, 'etc', 'group'), `root:x:0:\napp:x:${appUid}:\n`)
  await writeFile(join(l1, 'etc', 'lower.txt'), 'from the base layer\n')
  await writeFile(join(l1, 'etc', 'gone.txt'), 'whited out above\n')
  await mkdir(join(l1, 'data'))
  await writeFile(join(l1, 'data', 'old.txt'), 'hidden by an opaque directory above\n')
  // Layer 2: a new file, a whiteout, an opaque directory with its own content.
  await mkdir(join(l2, 'etc'), { recursive: true })
  await writeFile(join(l2, 'etc', 'upper.txt'), 'from the middle layer\n')
  await execa('mknod', [join(l2, 'etc', 'gone.txt'), 'c', '0', '0'])
  await mkdir(join(l2, 'data'))
  await writeFile(join(l2, 'data', 'new.txt'), 'the opaque directory\'s own\n')
  await execa('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(l2, 'data')])
  // Layer 3: the user's home, a setuid file, and a symlink that points out of the tree.
  await mkdir(join(l3, 'home', 'app'), { recursive: true })
  await writeFile(join(l3, 'home', 'app', 'note.txt'), 'owned by app\n')
  await chown(join(l3, 'home', 'app'), appUid, appUid)
  await chown(join(l3, 'home', 'app', 'note.txt'), appUid, appUid)
  await mkdir(join(l3, 'usr', 'bin'), { recursive: true })
  await writeFile(join(l3, 'usr', 'bin', 'raise'), '#!/bin/sh\n')
  await chmod(join(l3, 'usr', 'bin', 'raise'), 0o4755)
  await symlink('/etc/shadow', join(l3, 'usr', 'bin', 'shadow-link'))
  // The image's own guest helpers: hidden by the build's.
  await mkdir(join(l3, '.sandstorm', 'ga'), { recursive: true })
  await writeFile(join(l3, '.sandstorm', 'ga', 'planted'), 'from the image\n')
  return [l3, l2, l1]
}

/**
 * Links the kernel and initramfs that setup built for the shared debian guest into the boot cache
 * of the qemu dir `qemuDir`, so that no test downloads a kernel. Does nothing without a shared guest.
 */
async function seedBootFiles(qemuDir: string): Promise<void> {
  const debian = await createTemplateStore({ dir: templatesDir }).resolve('debian')
  const shared = guestArtifacts(join(sharedGuestDir, guestCacheKey(debian.rootfs.lowerDirs)))
  if (!existsSync(shared.kernel) || !existsSync(shared.initramfs)) return
  const boot = defaultBootDir(join(qemuDir, 'guest', 'any'))
  await mkdir(boot, { recursive: true })
  await symlink(shared.kernel, guestArtifacts(boot).kernel)
  await symlink(shared.initramfs, guestArtifacts(boot).initramfs)
}

/** `debugfs -R 'ls -p dir'` of an ext4 image: name to `{ mode, uid, gid }` (mode with the file type bits). */
async function listImage(image: string, dir: string): Promise<Map<string, { mode: number; uid: number; gid: number }>> {
  const r = await execa('debugfs', ['-R', `ls -p ${dir}`, image])
  const out = new Map<string, { mode: number; uid: number; gid: number }>()
  for (const line of String(r.stdout).split('\n')) {
    // /inode/mode/uid/gid/name/size/
    const f = line.split('/')
    if (f.length < 7 || f[5] === '.' || f[5] === '..') continue
    out.set(f[5]!, { mode: parseInt(f[2]!, 8), uid: Number(f[3]), gid: Number(f[4]) })
  }
  return out
}

/** Mount points under `dir` on the host (expected none once a build is done). */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8')
  return info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir))
}

describe('qemu guests from a root of layers', { skip, timeout: 20 * 60_000 }, () => {
  let work = ''
  let qemuDir = ''
  let layers: string[] = []
  let backend: QemuBackend
  let spec: (id: string, machine?: MachineImage) => SandboxSpec
  const made: string[] = []
  const vm = newId('sb')

  async function run(id: string, script: string, uid = 0) {
    let stdout = ''
    let stderr = ''
    const proc = await backend.exec(
      id,
      { argv: ['/bin/sh', '-c', script], env: {}, cwd: '/', uid, gid: uid },
      { onStdout: (c) => (stdout += Buffer.from(c).toString()), onStderr: (c) => (stderr += Buffer.from(c).toString()) },
    )
    const result = await proc.result
    return { stdout: stdout.trim(), stderr, exitCode: result.exitCode }
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sandstorm-qemu-layers-'))
    layers = await makeLayers(join(work, 'layers'))
    qemuDir = join(work, 'qemu')
    await seedBootFiles(qemuDir)
    backend = createQemuBackend({ dir: qemuDir, sparesPerMachine: 0 })
    spec = (id, machine) => ({
      id,
      rootfs: { lowerDirs: layers, readonlyBinds: [] },
      memoryMiB: 256,
      cpus: 1,
      pidsMax: 256,
      env: {},
      hostname: 'layers',
      network: { mode: 'none' },
      ...(machine ? { machine } : {}),
    })
  })

  after(async () => {
    for (const id of made) await backend?.destroy(id).catch(() => undefined)
    await backend?.close()
    if (!work) return
    const mounted = await mountsUnder(work)
    for (const m of mounted) await execa('umount', ['-l', m], { reject: false })
    await rm(work, { recursive: true, force: true })
    assert.deepEqual(mounted, [], 'no overlay of the layers stays mounted')
  })

  it('names a chain\'s guest for every layer in it, and a one-layer root as before', () => {
    assert.equal(guestCacheKey(['/t/debian/1/rootfs']), guestCacheKey('/t/debian/1/rootfs'))
    assert.equal(guestCacheKey('/t/debian/1/rootfs'), 'g2_t_debian_1_rootfs')
    const keys = new Set([guestCacheKey(['/l/a', '/l/b']), guestCacheKey(['/l/b', '/l/a']), guestCacheKey(['/l/c', '/l/b']), guestCacheKey(['/l/x', '/l/a', '/l/b'])])
    assert.equal(keys.size, 4, 'chains that differ in any layer or in order get their own guest')
  })

  it('builds the image from the merged layers: whiteouts applied, owners, modes and symlinks kept', async () => {
    const guest = await buildGuest({ dir: join(qemuDir, 'guest', guestCacheKey(layers)), lowerDirs: layers })
    assert.deepEqual(await mountsUnder(work), [], 'the build unmounted its overlays')
    const etc = await listImage(guest.rootImage, '/etc')
    assert.ok(etc.has('upper.txt') && etc.has('lower.txt') && etc.has('passwd'), `/etc of the image: ${[...etc.keys()].join(' ')}`)
    assert.equal(etc.has('gone.txt'), false, 'the whited-out file is not in the image')
    assert.deepEqual([...(await listImage(guest.rootImage, '/data')).keys()], ['new.txt'], 'the opaque directory hides the lower one\'s content')
    const home = await listImage(guest.rootImage, '/home')
    assert.deepEqual({ uid: home.get('app')?.uid, gid: home.get('app')?.gid }, { uid: appUid, gid: appUid })
    const bin = await listImage(guest.rootImage, '/usr/bin')
    assert.equal(bin.get('raise')?.mode, 0o104755, 'setuid file kept')
    assert.equal(bin.get('shadow-link')?.mode, 0o120777, 'a symlink stays a symlink')
    const link = await execa('debugfs', ['-R', 'stat /usr/bin/shadow-link', guest.rootImage])
    assert.match(String(link.stdout), /Fast link dest: "\/etc\/shadow"/, 'the symlink points where it pointed, nothing of the host was copied')
    const root = await listImage(guest.rootImage, '/')
    for (const dir of ['proc', 'sys', 'dev', 'run', '.sandstorm']) assert.ok(root.has(dir), `/${dir} made for the guest init (layers have none)`)
    assert.equal(root.get('tmp')?.mode, 0o41777, 'a directory for /tmp over the image\'s symlink by that name')
    const bundle = await listImage(guest.rootImage, '/.sandstorm/ga')
    assert.ok(bundle.has('qemu-ga') && bundle.has('setpriv') && bundle.has('ld-linux-x86-64.so.2'), `the bundle: ${[...bundle.keys()].join(' ')}`)
    assert.equal(bundle.has('planted'), false, 'what the image had under the helpers\' directory is hidden')
  })

  it('merges an image of many layers with long paths (more than one page of mount options)', async () => {
    const deep = join(work, 'many', 'a-directory-name-as-long-as-a-layer-store-makes-them-'.repeat(2))
    const many: string[] = []
    for (let i = 0; i < 80; i++) {
      const dir = join(deep, `sha256-${String(i).padStart(64, '0')}`, 'root,with:odd')
      await mkdir(join(dir, 'many'), { recursive: true })
      await writeFile(join(dir, 'many', String(i)), '')
      many.push(dir)
    }
    assert.ok(many.join(':').length > 4096)
    const names = await withMergedLayers(many, work, (root) => readdir(join(root, 'many')))
    assert.equal(names.length, 80)
    assert.deepEqual(await mountsUnder(work), [])
  })

  it('boots the chain and shows the merged root inside the VM', async () => {
    made.push(vm)
    await backend.create(spec(vm))
    const cat = await run(vm, 'cat /etc/upper.txt /etc/lower.txt')
    assert.equal(cat.exitCode, 0, cat.stderr)
    assert.equal(cat.stdout, 'from the middle layer\nfrom the base layer')
    const gone = await run(vm, 'ls /etc; cat /etc/gone.txt')
    assert.notEqual(gone.exitCode, 0)
    assert.doesNotMatch(gone.stdout, /gone\.txt/)
    assert.match(gone.stderr, /No such file/)
    assert.equal((await run(vm, 'ls /data')).stdout, 'new.txt')
    assert.equal((await run(vm, 'stat -c %a:%u /usr/bin/raise /home/app')).stdout, `4755:0\n755:${appUid}`)
    assert.equal((await run(vm, 'readlink /usr/bin/shadow-link')).stdout, '/etc/shadow')
  })

  it('runs commands as a user of the image\'s /etc/passwd (the image has no setpriv of its own)', async () => {
    assert.deepEqual(await backend.resolveUser(vm, 'app'), { uid: appUid, gid: appUid, home: '/home/app' })
    const r = await run(vm, 'id -u; id -g; cat /home/app/note.txt; echo x > /etc/denied', appUid)
    assert.equal(r.stdout, `${appUid}\n${appUid}\nowned by app`)
    assert.match(r.stderr, /Permission denied/)
    await assert.rejects(backend.resolveUser(vm, 'nobody-here'), /does not exist/)
  })

  it('saves the VM as a golden machine whose clone has the same root', async () => {
    assert.equal((await run(vm, 'echo golden > /tmp/state')).exitCode, 0)
    const machine = await backend.saveMachine(vm, join(work, 'machines', 'm'))
    const clone = newId('sb')
    made.push(clone)
    await backend.create(spec(clone, machine))
    const r = await run(clone, 'cat /tmp/state /etc/upper.txt; ls /data; cat /proc/sys/kernel/hostname')
    assert.equal(r.exitCode, 0, r.stderr)
    assert.equal(r.stdout, 'golden\nfrom the middle layer\nnew.txt\nlayers')
  })
})

describe('an image template boots as a qemu sandbox through the SDK', { skip: skip || (registryToolsMissing() ?? false), timeout: 20 * 60_000 }, () => {
  let registry: TestRegistry
  let stack: Stack
  let ownTemplates = ''
  let conn: { apiUrl: string; apiKey: string; requestTimeoutMs: number }

  before(async () => {
    registry = await startRegistry()
    ownTemplates = await mkdtemp(join(tmpdir(), 'sandstorm-qemu-image-templates-'))
    // The image's layers: busybox and users; a whiteout of /etc/motd and an opaque /srv/data; the app's file.
    const pushed = await pushTestImage(registry, 'layers/app:v1', { files: { 'srv/app.txt': 'hello from the image\n' }, user: 'app', workingDir: '/srv' })
    stack = await startStack({ templatesDir: ownTemplates, insecureRegistries: [registry.host] })
    await seedBootFiles(join(stack.dataDir, 'qemu'))
    // A cold qemu boot under TCG on a loaded host can take longer than the SDK's 60 s request deadline.
    conn = { ...stack.conn, requestTimeoutMs: 300_000 }
    await buildTemplate('layered-app', { ...conn, image: pushed.reference })
  })

  after(async () => {
    await stack?.close()
    await registry?.stop()
    if (ownTemplates) await rm(ownTemplates, { recursive: true, force: true })
  })

  it('runs the image\'s merged root in a VM, as the image\'s user and in its working dir', async () => {
    const sb = await Sandbox.create('layered-app', { ...conn, runtime: 'qemu', memoryMiB: 256, cpus: 1 })
    try {
      // The image links only some applets: id through busybox itself.
      const r = await sb.commands.run('busybox id -u; pwd; cat app.txt; ls data; [ -e /etc/motd ] || echo motd whited out', { ...conn })
      assert.equal(r.stdout, '1000\n/srv\nhello from the image\nc.txt\nmotd whited out\n')
    } finally {
      await sb.kill({ ...conn })
    }
  })
})
