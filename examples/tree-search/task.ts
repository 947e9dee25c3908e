/**
 * The task the search repairs: a small Python module with two bugs, its tests (the reward), and
 * the patches a repair may try. Everything here runs inside the sandbox; the search only reads
 * the score.
 */
import type { Sandbox } from '@sandstorm/sdk'

/** Where the project lives in the sandbox. */
export const projectDir = '/root/project'

/** The module to repair: pages are numbered from 1, but `page` counts from 0 and `page_count` rounds down. */
const pagesPy = `def page_count(total, per_page):
    """How many pages \`total\` items fill, \`per_page\` to a page."""
    return total // per_page


def page(items, number, per_page):
    """The items on page \`number\`; the first page is 1."""
    start = number * per_page
    return items[start:start + per_page]


def last_page(items, per_page):
    """The items on the last page."""
    return page(items, page_count(len(items), per_page), per_page)
`

/** The tests: one line per case, then "passed N/M". The two bugs cancel out in some last_page cases. */
const testPy = `from pages import page, page_count, last_page

CASES = [
    "page_count(10, 3) == 4",
    "page_count(3, 4) == 1",
    "page(list(range(10)), 4, 3) == [9]",
    "page(list(range(10)), 5, 3) == []",
    "last_page(list(range(10)), 3) == [9]",
    "last_page(list(range(9)), 3) == [6, 7, 8]",
    "last_page(list(range(4)), 2) == [2, 3]",
    "last_page([0], 3) == [0]",
]

passed = 0
for case in CASES:
    try:
        ok = eval(case) is True
    except Exception:
        ok = False
    passed += ok
    print("ok  " if ok else "FAIL", case)
print(f"passed {passed}/{len(CASES)}")
`

/** One patch: replace the line that reads `line` (indentation aside) by `to`. */
export interface Edit {
  line: string
  to: string
}

/** The patches a repair may try: off-by-one variants and operator swaps on the three lines that compute. */
export const edits: Edit[] = [
  { line: 'return total // per_page', to: 'return total // per_page + 1' },
  { line: 'return total // per_page', to: 'return (total + per_page - 1) // per_page' },
  { line: 'return total // per_page', to: 'return (total - 1) // per_page' },
  { line: 'start = number * per_page', to: 'start = (number - 1) * per_page' },
  { line: 'start = number * per_page', to: 'start = (number + 1) * per_page' },
  { line: 'return items[start:start + per_page]', to: 'return items[start:start + per_page - 1]' },
  { line: 'return items[start:start + per_page]', to: 'return items[start + 1:start + per_page + 1]' },
]

/** Writes the buggy project into a fresh sandbox, with a copy of the module to diff against at the end. */
export async function writeProject(sbx: Sandbox): Promise<void> {
  await sbx.files.write([
    { path: `${projectDir}/pages.py`, data: pagesPy },
    { path: `${projectDir}/pages.orig.py`, data: pagesPy },
    { path: `${projectDir}/test_pages.py`, data: testPy },
  ])
}

/** Applies a patch to the module in the sandbox (read, replace the line, write back). */
export async function applyEdit(sbx: Sandbox, edit: Edit): Promise<void> {
  const path = `${projectDir}/pages.py`
  const lines = (await sbx.files.read(path)).split('\n')
  const at = lines.findIndex((l) => l.trim() === edit.line)
  if (at < 0) throw new Error(`expected a line "${edit.line}" in ${path}, found none`)
  lines[at] = lines[at]!.slice(0, lines[at]!.indexOf(edit.line)) + edit.to
  await sbx.files.write(path, lines.join('\n'))
}

/** Runs the tests in the sandbox: the reward is how many cases pass (a non-zero exit throws CommandExitError). */
export async function score(sbx: Sandbox): Promise<{ passed: number; total: number }> {
  // -B: no .pyc, whose cache could outlive an edit made within the same second.
  const r = await sbx.commands.run(['python3', '-B', 'test_pages.py'], { cwd: projectDir })
  const m = /^passed (\d+)\/(\d+)$/m.exec(r.stdout)
  if (!m) throw new Error(`expected the tests to end with "passed N/M", got: ${r.stdout}${r.stderr}`)
  return { passed: Number(m[1]), total: Number(m[2]) }
}

/** The repaired module beside the original, as `diff -u` in the sandbox prints it. */
export async function diff(sbx: Sandbox): Promise<string> {
  // diff exits 1 when the files differ, which run() would throw for.
  const r = await sbx.commands.run('diff -u pages.orig.py pages.py || true', { cwd: projectDir })
  return r.stdout
}
