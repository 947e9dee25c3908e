import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, symlink, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import { stepCacheKey } from './cache-key.js'
import { resolveSources } from './context-sources.js'
import { loadDockerignore, parseDockerignore } from './dockerignore.js'

let ctx: string

async function tree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true })
    await writeFile(join(dir, rel), body)
  }
}

const none = parseDockerignore('')
const where = 'Dockerfile line 3 (COPY)'
const rels = async (patterns: string[], filter = none) => (await resolveSources(ctx, patterns, filter, where)).sources.map((s) => [s.rel, s.type, s.entries.map((e) => e.sub)])
const digest = async (patterns: string[], filter = none) => (await resolveSources(ctx, patterns, filter, where)).digest

function refused(pattern: RegExp): (e: unknown) => boolean {
  return (e) => e instanceof SandstormError && e.code === 'invalid_argument' && pattern.test(e.message)
}

describe('parseDockerignore', () => {
  it("applies Docker's rules: globs, **, exceptions, comments, leading slash", () => {
    const f = parseDockerignore('# comment\n\n/secret*\n!secret-ok\nnode_modules/\n**/*.log\n')
    assert.deepEqual(f.patterns, ['secret*', '!secret-ok', 'node_modules', '**/*.log'])
    assert.equal(f.ignores('secret.key'), true)
    assert.equal(f.ignores('secret-ok'), false)
    assert.equal(f.ignores('node_modules/x/y.js'), true)
    assert.equal(f.ignores('a/b/c.log'), true)
    assert.equal(f.ignores('src/app.js'), false)
    assert.equal(f.ignores(''), false)
  })
})

describe('resolveSources', () => {
  before(async () => {
    ctx = await mkdtemp(join(tmpdir(), 'sandstorm-ctx-'))
    await tree(ctx, {
      'a.txt': 'a',
      'b.js': 'b',
      '.hidden.js': 'h',
      'src/x.js': 'x',
      'src/y.ts': 'y',
      'src/deep/z.js': 'z',
      'secret.key': 'k',
      'dir/keep': 'keep',
      'dir/drop.log': 'drop',
    })
    await symlink('/etc/passwd', join(ctx, 'abs-link'))
    await symlink('src', join(ctx, 'src-link'))
  })
  after(() => rm(ctx, { recursive: true, force: true }))

  it('finds files, directories (with what is under them) and Go globs (* matches dot files)', async () => {
    assert.deepEqual(await rels(['a.txt']), [['a.txt', 'file', ['']]])
    assert.deepEqual(await rels(['*.js']), [
      ['.hidden.js', 'file', ['']],
      ['b.js', 'file', ['']],
    ])
    assert.deepEqual(await rels(['src/*.js', 'src']), [
      ['src/x.js', 'file', ['']],
      ['src', 'dir', ['', 'deep', 'deep/z.js', 'x.js', 'y.ts']],
    ])
    assert.deepEqual(await rels(['/src/deep/../x.js']), [['src/x.js', 'file', ['']]])
  })

  it('takes a symlink as a symlink, never following it', async () => {
    const [source] = (await resolveSources(ctx, ['abs-link'], none, where)).sources
    assert.equal(source!.type, 'symlink')
    assert.equal(source!.entries[0]!.linkTarget, '/etc/passwd')
  })

  it('refuses a path out of the context, through a symlink, or missing', async () => {
    await assert.rejects(resolveSources(ctx, ['../etc/passwd'], none, where), refused(/line 3 \(COPY\): source "..\/etc\/passwd" is outside the build context/))
    await assert.rejects(resolveSources(ctx, ['src-link/x.js'], none, where), refused(/goes through the symlink "src-link", which is not followed/))
    await assert.rejects(resolveSources(ctx, ['nope.txt'], none, where), refused(/"nope.txt" is not in the build context/))
    await assert.rejects(resolveSources(ctx, ['*.none'], none, where), refused(/no file in the build context matches/))
  })

  it('leaves out what .dockerignore excludes, and refuses naming an excluded file', async () => {
    await writeFile(join(ctx, '.dockerignore'), 'secret.key\ndir/*.log\n')
    try {
      const filter = await loadDockerignore(ctx)
      await assert.rejects(resolveSources(ctx, ['secret.key'], filter, where), refused(/excluded by .dockerignore/))
      const [dir] = (await resolveSources(ctx, ['dir'], filter, where)).sources
      assert.deepEqual(dir!.entries.map((e) => e.sub), ['', 'keep'])
      const all = (await resolveSources(ctx, ['.'], filter, where)).sources[0]!.entries.map((e) => e.sub)
      assert.ok(!all.includes('secret.key') && all.includes('a.txt') && all.includes('.dockerignore'))
    } finally {
      await rm(join(ctx, '.dockerignore'))
    }
  })

  it('gives one digest for one content, another for changed bytes, modes or names, and ignores excluded files', async () => {
    const before = await digest(['.'])
    assert.equal(await digest(['.']), before)
    await writeFile(join(ctx, 'src/x.js'), 'x2')
    const changed = await digest(['.'])
    assert.notEqual(changed, before)
    await writeFile(join(ctx, 'src/x.js'), 'x')
    assert.equal(await digest(['.']), before, 'the same bytes again: the same digest (times do not count)')
    await chmod(join(ctx, 'a.txt'), 0o755)
    assert.notEqual(await digest(['.']), before)
    await chmod(join(ctx, 'a.txt'), 0o644)
    assert.notEqual(await digest(['a.txt']), await digest(['b.js']))

    const filter = parseDockerignore('secret.key')
    const withSecret = await digest(['.'], filter)
    await writeFile(join(ctx, 'secret.key'), 'another secret')
    assert.equal(await digest(['.'], filter), withSecret, 'an ignored file changes nothing')
    assert.notEqual(await digest(['.']), before)
  })
})

describe('stepCacheKey', () => {
  const parent = `sha256:${'0'.repeat(64)}` as const
  it('is the same for the same input and differs for any change', () => {
    const key = stepCacheKey(parent, 'RUN', { argv: ['/bin/sh', '-c', 'make'], env: { A: '1', B: '2' }, cwd: '/', user: 'root' })
    assert.match(key, /^sha256:[0-9a-f]{64}$/)
    assert.equal(stepCacheKey(parent, 'RUN', { user: 'root', cwd: '/', env: { B: '2', A: '1' }, argv: ['/bin/sh', '-c', 'make'] }), key, 'key order does not matter')
    assert.notEqual(stepCacheKey(parent, 'RUN', { argv: ['/bin/sh', '-c', 'make'], env: { A: '1', B: '3' }, cwd: '/', user: 'root' }), key, 'an arg or env value')
    assert.notEqual(stepCacheKey(parent, 'RUN', { argv: ['/bin/sh', '-c', 'make all'], env: { A: '1', B: '2' }, cwd: '/', user: 'root' }), key, 'the instruction')
    assert.notEqual(stepCacheKey(parent, 'RUN', { argv: ['/bin/sh', '-c', 'make'], env: { A: '1', B: '2' }, cwd: '/', user: 'app' }), key, 'the user')
    assert.notEqual(stepCacheKey(key, 'RUN', { argv: ['/bin/sh', '-c', 'make'], env: { A: '1', B: '2' }, cwd: '/', user: 'root' }), key, 'the parent')
  })
})
