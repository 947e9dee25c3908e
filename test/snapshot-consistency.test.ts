/**
 * Snapshots are consistent, raced as an attacker would: a writer in the sandbox overwrites files
 * in place, each with one write() of a known size and content, as fast as it can, while snapshots
 * are taken one after another. Every fork must find each file whole: its full size, and one
 * version's bytes throughout (a torn file would mix two), and files deleted before stay deleted.
 * On both storage drivers.
 */
import assert from 'node:assert/strict'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { CommandExitError, deleteSnapshot, Sandbox } from '@sandstorm/sdk'
import { btrfsSkipReason, makeBtrfsLoop, type BtrfsLoop } from './helpers/btrfs-loop.js'
import { skipReason, startStack, type Stack } from './helpers/stack.js'
import { until } from './helpers/until.js'

/** Bytes of each write: large enough that a copy or a snapshot in its middle would split it. */
const fileBytes = 1024 * 1024
const files = 8
const versions = 8
const snapshots = 10

/**
 * Makes one source file per version (all one letter: A, B, ...), starts every target as version
 * A, then overwrites the targets in place forever: `dd bs=N count=1 iflag=fullblock` reads the
 * whole source and writes it with a single write() at offset 0, without truncating.
 */
const writer = [
  // A file of the template deleted (a whiteout), and a dir replaced (opaque): forks must not see them.
  'rm /etc/debian_version && rm -rf /usr/share/doc && mkdir /usr/share/doc && echo mine > /usr/share/doc/only',
  'mkdir -p /race && cd /race',
  `v=0; while [ $v -lt ${versions} ]; do head -c ${fileBytes} /dev/zero | tr '\\0' "$(printf "\\\\$(printf %o $((65 + v)))")" > src-$v; v=$((v+1)); done`,
  `f=0; while [ $f -lt ${files} ]; do cp src-0 f$f; f=$((f+1)); done`,
  // The round count is replaced whole (rename), so that reading it never finds it empty.
  'echo 0 > rounds',
  `i=0; while true; do v=$((i % ${versions})); f=0; while [ $f -lt ${files} ]; do dd if=src-$v of=f$f bs=${fileBytes} count=1 conv=notrunc iflag=fullblock status=none; f=$((f+1)); done; i=$((i+1)); echo $i > rounds.new; mv rounds.new rounds; done`,
].join('\n')

/** Prints `name size foreign` per target: foreign counts bytes that differ from its first byte. */
const check = `cd /race && for f in f*; do c=$(head -c 1 $f); echo "$f $(wc -c < $f) $(tr -d "$c" < $f | wc -c) $c"; done`

function consistencySuite(driver: 'overlay' | 'btrfs', open: () => Promise<Stack | string>) {
  describe(`snapshot consistency under a racing writer (${driver})`, () => {
    let stack: Stack | undefined
    let skipped: string | undefined
    before(async () => {
      const opened = await open()
      if (typeof opened === 'string') skipped = opened
      else stack = opened
    })
    after(async () => {
      await stack?.close()
    })

    it('gives every fork whole files only, each of one version', async (t) => {
      if (!stack) return t.skip(skipped)
      const { conn } = stack
      const sh = async (sb: Sandbox, cmd: string) => {
        const result = await sb.commands.run(cmd, { ...conn })
        assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
        return result.stdout
      }
      const sb = await Sandbox.create('debian', { ...conn })
      await sb.commands.run(writer, { ...conn, background: true })
      await sh(sb, 'while [ "$(cat /race/rounds 2>/dev/null || echo 0)" -lt 2 ]; do sleep 0.01; done')
      const firstRound = Number(await sh(sb, 'cat /race/rounds'))
      const taken: string[] = []
      const seen = new Set<string>()
      try {
        for (let i = 0; i < snapshots; i++) {
          const snap = await sb.snapshot(conn)
          taken.push(snap.id)
          assert.equal(snap.driver, driver)
          const [fork] = await Sandbox.fork(snap.id, { ...conn, count: 1 })
          try {
            assert.equal(await sh(fork!, 'test -e /etc/debian_version && echo present || echo deleted; ls /usr/share/doc'), 'deleted\nonly\n')
            const lines = (await sh(fork!, check)).trim().split('\n')
            assert.equal(lines.length, files, lines.join('\n'))
            for (const line of lines) {
              const [name, size, foreign, letter] = line.split(' ')
              assert.equal(Number(size), fileBytes, `snapshot ${i + 1}: ${name} is ${size} bytes, expected ${fileBytes} (torn)`)
              assert.equal(Number(foreign), 0, `snapshot ${i + 1}: ${name} mixes versions (${foreign} bytes differ from its first, "${letter}")`)
              seen.add(letter!)
            }
          } finally {
            await fork!.kill(conn)
          }
        }
        // The race was real: the writer kept writing through the snapshots, and after them.
        const lastRound = Number(await sh(sb, 'cat /race/rounds'))
        assert.ok(lastRound > firstRound, `expected the writer to go on (round ${firstRound} before, ${lastRound} after)`)
        await sh(sb, `while [ "$(cat /race/rounds)" -le ${lastRound} ]; do sleep 0.01; done`)
        // And the snapshots caught it at more than one version.
        assert.ok(seen.size >= 2, `every fork saw only version ${[...seen].join()}`)
      } finally {
        await sb.kill(conn)
        for (const id of taken.reverse()) await deleteSnapshot(id, conn).catch(() => undefined)
      }
    })

    it('restores in place: a writer running at the restore ends, the files are the snapshot\'s, and no writable layer is left over', async (t) => {
      if (!stack) return t.skip(skipped)
      const { conn } = stack
      const writableDir = join(stack.dataDir, 'storage', 'writable')
      const layers = async () => (await readdir(writableDir)).filter((n) => !n.endsWith('.json')).sort()
      const initial = await layers()
      const sb = await Sandbox.create('debian', { ...conn })
      let snapId = ''
      try {
        await sb.commands.run('mkdir -p /kept && echo one > /kept/a', { ...conn })
        const snap = await sb.snapshot(conn)
        snapId = snap.id
        const before = await layers()
        const writer = await sb.commands.run('while :; do echo x >> /kept/b; done', { ...conn, background: true })
        await sb.restore(snap.id, conn)
        await assert.rejects(writer.wait(), (err: unknown) => err instanceof CommandExitError && err.result.restoredTo === snap.id)
        const after = await sb.commands.run('cat /kept/a; ls /kept', { ...conn })
        assert.equal(after.stdout, 'one\na\n')
        // overlay: the same writable dir, a new upper in it; btrfs: a new writable dir in the old one's place.
        await until('the replaced writable layer is removed', async () => (await layers()).length === before.length)
      } finally {
        await sb.kill(conn)
        if (snapId) await deleteSnapshot(snapId, conn).catch(() => undefined)
      }
      await until('no writable layer of the sandbox is left', async () => JSON.stringify(await layers()) === JSON.stringify(initial))
    })
  })
}

const skip = skipReason()

consistencySuite('overlay', async () => skip ?? (await startStack()))

let loop: BtrfsLoop | undefined
after(async () => {
  await loop?.close()
})
consistencySuite('btrfs', async () => {
  const reason = skip ?? (await btrfsSkipReason())
  if (reason) return reason
  loop = await makeBtrfsLoop(1024)
  // The whole data dir on btrfs: the agent picks the btrfs driver for a layer store there.
  const dataDir = join(loop.mountPoint, 'data')
  await mkdir(dataDir, { mode: 0o700 })
  return startStack({ dataDir })
})
