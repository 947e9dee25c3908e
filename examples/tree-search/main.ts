/**
 * tree-search: repairs a small Python module by searching over candidate patches, with its tests
 * as the reward, through the SDK's snapshots, restores and forks. Prints what it explored and the
 * fix, and removes every sandbox and snapshot it made, also on an error or Ctrl-C.
 *
 * The server comes from SANDSTORM_URL and SANDSTORM_API_KEY, else a local `sandstorm up`.
 */
import { randomBytes } from 'node:crypto'
import { deleteSnapshot, listSnapshots, Sandbox } from '@sandstorm/sdk'
import { formatTree, search, type SearchNode } from './search.js'
import { diff, writeProject } from './task.js'

/** Every sandbox and snapshot of this run carries this tag, so that the cleanup finds them all. */
const run = randomBytes(4).toString('hex')
const labels = { example: 'tree-search', run }
const snapshotPrefix = `tree-search ${run} `

// The first Ctrl-C stops after the step in flight and cleans up; a second leaves at once.
const interrupt = new AbortController()
process.on('SIGINT', () => {
  if (interrupt.signal.aborted) process.exit(130)
  console.error('interrupted: cleaning up (Ctrl-C again to leave at once)')
  interrupt.abort(new Error('interrupted'))
})

/** Removes what this run made: its sandboxes first (a restored sandbox stands on a snapshot), then its snapshots, newest first. */
async function cleanUp(): Promise<void> {
  for (const s of await Sandbox.list({ labels })) await Sandbox.kill(s.id)
  const mine = (await listSnapshots()).filter((s) => s.label.startsWith(snapshotPrefix))
  for (const s of mine.reverse()) await deleteSnapshot(s.id)
  console.log(`cleanup: removed every sandbox and ${mine.length} snapshots of run ${run}`)
}

async function main(): Promise<boolean> {
  // Forks inherit this config: small, and no network (the task needs none).
  const work = await Sandbox.create('debian', { labels, memoryMiB: 256, cpus: 0.5, network: 'none', timeoutMs: 10 * 60_000 })
  console.log(`working sandbox ${work.sandboxId}: pages.py has bugs, test_pages.py is the reward`)
  await writeProject(work)
  const result = await search(work, {
    labels,
    snapshotLabel: (n) => `${snapshotPrefix}${n.name}`,
    signal: interrupt.signal,
    log: (line) => console.log(`  ${line}`),
  })
  console.log('\nexplored:')
  for (const line of formatTree(result.root)) console.log(line)
  const explored = countNodes(result.root)
  console.log(`\n${explored} nodes, ${result.forks} forked sandboxes, ${result.snapshots} snapshots, ${result.restores} restores`)
  if (!result.solution) {
    console.log('no patches found that make every test pass')
    return false
  }
  console.log(`solved at ${result.solution.name}: ${result.solution.passed}/${result.solution.total} tests pass in ${work.sandboxId}`)
  console.log(await diff(work))
  return true
}

function countNodes(n: SearchNode): number {
  return 1 + n.children.reduce((sum, c) => sum + countNodes(c), 0)
}

let solved = false
try {
  solved = await main()
} catch (err) {
  console.error(`tree-search failed: ${err instanceof Error ? err.message : String(err)}`)
}
try {
  await cleanUp()
} catch (err) {
  solved = false
  console.error(`cleanup failed, sandboxes labelled run=${run} or snapshots labelled "${snapshotPrefix}*" may be left: ${err instanceof Error ? err.message : String(err)}`)
}
process.exitCode = solved ? 0 : 1
