import assert from 'node:assert/strict'
import { test } from 'node:test'
import { commandsFor, createProgram } from './program.js'

test('commandsFor names the command after the global options, none for --version, else all', () => {
  assert.deepEqual(commandsFor(['exec', 'sb-1', '--', 'true']), { only: 'exec' })
  assert.deepEqual(commandsFor(['--url', 'http://127.0.0.1:1', '--api-key', 'k', 'ls', '--json']), { only: 'ls' })
  assert.deepEqual(commandsFor(['--url=http://127.0.0.1:1', 'port-forward', 'sb-1', '8080']), { only: 'port-forward' })
  // A global option's value that looks like a command is not one.
  assert.deepEqual(commandsFor(['--api-key', 'exec', 'rm', 'sb-1']), { only: 'rm' })
  assert.equal(commandsFor(['--version']), 'none')
  assert.equal(commandsFor(['--url', 'u', '-V']), 'none')
  for (const args of [[], ['--help'], ['-h', 'exec'], ['help', 'exec'], ['exce', 'sb-1'], ['--no-such-flag', 'exec']]) {
    assert.equal(commandsFor(args), 'all', args.join(' '))
  }
})

test('the program registers the one command argv runs, or all of them in help order', async () => {
  const only = await createProgram(['node', 'sandstorm', '--url', 'u', 'template', 'ls'])
  assert.deepEqual(only.commands.map((c) => c.name()), ['template'])
  const none = await createProgram(['node', 'sandstorm', '--version'])
  assert.deepEqual(none.commands, [])
  const all = await createProgram(['node', 'sandstorm', '--help'])
  const names = all.commands.map((c) => c.name())
  assert.deepEqual(names.slice(0, 6), ['up', 'server', 'agent', 'agents', 'logs', 'create'])
  // Every root command is found by its own name, and its module alone registers it.
  for (const name of names) {
    assert.deepEqual(commandsFor([name]), { only: name })
    const program = await createProgram(['node', 'sandstorm', name])
    assert.ok(program.commands.some((c) => c.name() === name), name)
  }
})
