import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { initAlive, killInit } from './init-kill.js'

function startTicksOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
}

test('a live process with its recorded start time is alive; another start time or no process is not', () => {
  const self = { pid: process.pid, startTicks: startTicksOf(process.pid) }
  assert.equal(initAlive(self), true)
  assert.equal(initAlive({ ...self, startTicks: self.startTicks + 1 }), false)
  assert.equal(initAlive({ pid: 2 ** 22 + 1, startTicks: 0 }), false)
})

test('killInit kills the process, thaws, and resolves once it is dead', async () => {
  const child = spawn('sleep', ['100'], { stdio: 'ignore' })
  await once(child, 'spawn')
  const init = { pid: child.pid!, startTicks: startTicksOf(child.pid!) }
  const exited = once(child, 'exit')
  let thawed = 0
  assert.equal(await killInit(init, async () => void thawed++), true)
  assert.equal(initAlive(init), false)
  assert.equal(thawed, 1)
  assert.deepEqual(await exited, [null, 'SIGKILL'])
})

test('killInit leaves a process that is not the recorded one alone', async () => {
  let thawed = 0
  const stranger = { pid: process.pid, startTicks: startTicksOf(process.pid) + 1 }
  assert.equal(await killInit(stranger, async () => void thawed++), true)
  assert.equal(thawed, 0)
})
