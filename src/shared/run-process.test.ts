import assert from 'node:assert/strict'
import { test } from 'node:test'
import { complaintOf, runTool } from './run-tool.js'

test('a tool that succeeds gives its output and exit 0', async () => {
  const result = await runTool('sh', ['-c', 'echo out; echo err >&2'])
  assert.deepEqual({ ...result }, { exitCode: 0, stdout: 'out\n', stderr: 'err\n', isCanceled: false })
})

test('a tool that fails gives its exit code and complaint', async () => {
  const result = await runTool('sh', ['-c', 'echo first >&2; echo second >&2; exit 3'])
  assert.equal(result.exitCode, 3)
  assert.equal(result.isCanceled, false)
  assert.equal(complaintOf(result), 'first; second')
})

test('a tool that is not there says so without throwing', async () => {
  const result = await runTool('/nonexistent/tool', [])
  assert.equal(result.exitCode, null)
  assert.match(result.failure ?? '', /ENOENT/)
})

test('a cancelled tool is killed and reported cancelled', async () => {
  const controller = new AbortController()
  const running = runTool('sleep', ['30'], { signal: controller.signal })
  controller.abort()
  const result = await running
  assert.equal(result.isCanceled, true)
  assert.equal(result.exitCode, null)
})

test('stdin is closed at once, so a tool reading it ends', async () => {
  const result = await runTool('cat', [])
  assert.deepEqual([result.exitCode, result.stdout], [0, ''])
})
