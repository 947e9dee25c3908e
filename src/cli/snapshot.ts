/** `sandstorm snapshot ID`, `snapshot ls [--tree]`, `snapshot rm SNAP...` and `fork SNAP --count N`. */
import type { Command } from 'commander'
import { deleteSnapshot, listSnapshots, Sandbox } from '@sandstorm/sdk'
import { connectionOf, parsePositiveInt, printJson, printTable } from './cli-context.js'
import { exitCodeOf } from './exit-codes.js'
import { snapshotTreeLines } from './snapshot-tree.js'
import { errorText, printable } from './terminal-text.js'

/** Registers `snapshot` (with `ls` and `rm`) and `fork`. */
export function registerSnapshot(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description('snapshot a sandbox (it goes on running) and print the snapshot id; or list and delete snapshots')
    .argument('[id]', 'sandbox to snapshot')
    .option('--label <text>', 'a label to find the snapshot by')
    .option('--json', 'print the snapshot as JSON')
    .action(async (id: string | undefined, flags: { label?: string; json?: boolean }, cmd: Command) => {
      if (!id) return cmd.help({ error: true })
      const sb = await Sandbox.connect(id, connectionOf(cmd))
      const info = await sb.snapshot({ ...connectionOf(cmd), label: flags.label })
      if (flags.json) printJson(info)
      else process.stdout.write(`${info.id}\n`)
    })
  snapshot
    .command('ls')
    .description('list snapshots')
    .option('--tree', 'draw the tree that snapshots of forks make')
    .option('--json', 'print JSON')
    .action(async (flags: { tree?: boolean; json?: boolean }, cmd: Command) => {
      const list = await listSnapshots(connectionOf(cmd))
      // `snapshot --json` takes the flag first when it follows `ls`; it means the same here.
      if (flags.json || cmd.parent?.opts<{ json?: boolean }>().json) return printJson(list)
      if (flags.tree) {
        const lines = snapshotTreeLines(list)
        if (lines.length > 0) process.stdout.write(`${lines.map((l) => printable(l)).join('\n')}\n`)
        return
      }
      printTable(['ID', 'PARENT', 'SANDBOX', 'TEMPLATE', 'LABEL', 'DEPTH', 'CREATED'], list.map((s) => [s.id, s.parentId ?? '-', s.sandboxId, s.template, s.label, String(s.depth), s.createdAt]))
    })
  snapshot
    .command('rm')
    .description('delete snapshots (refused while a snapshot or a sandbox stands on one)')
    .argument('<snapshot...>', 'snapshot ids')
    .action(async (ids: string[], _flags: unknown, cmd: Command) => {
      for (const id of ids) {
        try {
          await deleteSnapshot(id, connectionOf(cmd))
        } catch (err) {
          if (ids.length === 1) throw err
          process.exitCode ??= exitCodeOf(err)
          process.stderr.write(`sandstorm: ${printable(id)}: ${errorText(err)}\n`)
        }
      }
    })

  program
    .command('fork')
    .description('start sandboxes from a snapshot and print their ids')
    .argument('<snapshot>', 'snapshot id')
    .option('--count <n>', 'how many sandboxes', '1')
    .option('--json', 'print the sandboxes as JSON')
    .action(async (snapshotId: string, flags: { count: string; json?: boolean }, cmd: Command) => {
      const conn = connectionOf(cmd)
      const forks = await Sandbox.fork(snapshotId, { ...conn, count: parsePositiveInt(flags.count, '--count') })
      if (flags.json) return printJson(await Promise.all(forks.map((f) => f.getInfo(conn))))
      process.stdout.write(`${forks.map((f) => f.sandboxId).join('\n')}\n`)
    })
}
