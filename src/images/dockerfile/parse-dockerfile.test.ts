import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SandstormError } from '../../shared/index.js'
import type { ImageDefaults } from '../contracts.js'
import { parseDockerfile } from './parse-dockerfile.js'
import { planDockerfile, type PlannedStep } from './plan-steps.js'

const base: ImageDefaults = { env: { PATH: '/usr/bin:/bin', HOME: '/root' }, exposedPorts: [22], labels: { from: 'base' }, cmd: ['bash'] }

function plan(text: string, buildArgs: Record<string, string> = {}, defaults: ImageDefaults = base) {
  return planDockerfile(parseDockerfile(text, buildArgs), defaults, buildArgs)
}

function refusal(text: string, pattern: RegExp): void {
  assert.throws(
    () => plan(text),
    (e: unknown) => {
      assert.ok(e instanceof SandstormError, String(e))
      assert.equal(e.code, 'invalid_argument')
      assert.match(e.message, pattern)
      return true
    },
  )
}

const only = <K extends PlannedStep['kind']>(steps: PlannedStep[], kind: K) => steps.filter((s): s is Extract<PlannedStep, { kind: K }> => s.kind === kind)

describe('parseDockerfile and planDockerfile', () => {
  it('reads FROM, expanding the ARGs before it and build args', () => {
    const text = 'ARG FLAVOR=bookworm\nFROM debian:${FLAVOR}-slim\n'
    assert.equal(parseDockerfile(text).from.image, 'debian:bookworm-slim')
    assert.equal(parseDockerfile(text, { FLAVOR: 'trixie' }).from.image, 'debian:trixie-slim')
    const p = parseDockerfile(text)
    assert.equal(p.from.index, 1)
    assert.equal(p.from.line, 2)
    assert.equal(parseDockerfile('FROM debian AS build\n').from.image, 'debian')
  })

  it('runs shell form through /bin/sh -c (or SHELL) and exec form as given, with continuation lines joined', () => {
    const { steps } = plan('FROM debian\nRUN echo "a  b" && \\\n  echo c\nRUN ["/bin/echo", "x y", "\\u0041"]\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]\nRUN echo $HOME\n')
    const runs = only(steps, 'run')
    assert.deepEqual(runs[0]!.argv, ['/bin/sh', '-c', 'echo "a  b" &&   echo c'])
    assert.deepEqual(runs[1]!.argv, ['/bin/echo', 'x y', 'A'])
    assert.deepEqual(runs[2]!.argv, ['/bin/bash', '-eo', 'pipefail', '-c', 'echo $HOME'])
    assert.equal(runs[0]!.index, 1)
    assert.equal(runs[0]!.line, 2)
    assert.equal(runs[2]!.line, 6)
  })

  it('gives RUN the env, ARGs, cwd and user in effect (ENV wins over ARG)', () => {
    const { steps } = plan('FROM debian\nARG MODE=dev\nARG TOKEN\nARG SHADOW=arg\nENV SHADOW=env APP=/srv\nWORKDIR $APP\nWORKDIR sub\nUSER 1000:1000\nRUN make\n', { TOKEN: 't' })
    const [run] = only(steps, 'run')
    assert.deepEqual(run!.env, { PATH: '/usr/bin:/bin', HOME: '/root', MODE: 'dev', TOKEN: 't', SHADOW: 'env', APP: '/srv' })
    assert.equal(run!.cwd, '/srv/sub')
    assert.equal(run!.user, '1000:1000')
    assert.deepEqual(only(steps, 'workdir').map((s) => s.path), ['/srv', '/srv/sub'])
  })

  it('reads ENV in both forms, each value seeing the variables before the line', () => {
    const { defaults } = plan('FROM debian\nENV A=1 B="two words" C=x\\ y\nENV A=2 D=$A\nENV E old ${A} \'$A\'\nENV F=${NOPE:-dflt} G=${A:+set}\n')
    assert.deepEqual(defaults.env, { PATH: '/usr/bin:/bin', HOME: '/root', A: '2', B: 'two words', C: 'x y', D: '1', E: 'old 2 $A', F: 'dflt', G: 'set' })
  })

  it('uses a global ARG after FROM only when declared again, and build args over defaults', () => {
    const { defaults } = plan('ARG V=1\nFROM debian\nENV BEFORE=${V:-unset}\nARG V\nENV AFTER=$V\nARG W=w\nENV W=$W\n', { W: 'given' })
    assert.equal(defaults.env.BEFORE, 'unset')
    assert.equal(defaults.env.AFTER, '1')
    assert.equal(defaults.env.W, 'given')
  })

  it('reports build args no ARG declares', () => {
    assert.deepEqual(plan('FROM debian\nARG A\n', { A: '1', B: '2' }).unusedBuildArgs, ['B'])
  })

  it('plans COPY and ADD: flags, multiple sources, dest relative to WORKDIR, JSON form', () => {
    const { steps } = plan('FROM debian\nWORKDIR /app\nENV OWNER=app\nCOPY --chown=$OWNER:staff --chmod=640 a.txt b src/*.js ./lib/\nCOPY ["x y", "/opt/z"]\nADD pkg.tar.gz .\nCOPY --link f /\n')
    const copies = only(steps, 'copy')
    assert.deepEqual(copies[0], { index: 3, line: 4, text: 'COPY --chown=$OWNER:staff --chmod=640 a.txt b src/*.js ./lib/', kind: 'copy', add: false, sources: ['a.txt', 'b', 'src/*.js'], dest: '/app/lib/', chown: 'app:staff', chmod: 0o640 })
    assert.deepEqual(copies[1]!.sources, ['x y'])
    assert.equal(copies[1]!.dest, '/opt/z')
    assert.equal(copies[2]!.add, true)
    assert.equal(copies[2]!.dest, '/app/')
    assert.equal(copies[3]!.dest, '/')
  })

  it('applies ENTRYPOINT, CMD, EXPOSE, LABEL, USER and WORKDIR to the defaults as Docker does', () => {
    const a = plan('FROM debian\nENTRYPOINT ["/init"]\n').defaults
    assert.deepEqual(a.entrypoint, ['/init'])
    assert.equal(a.cmd, undefined, "a new ENTRYPOINT drops the base image's CMD")
    const b = plan('FROM debian\nCMD ["serve"]\nENTRYPOINT /init --x\nEXPOSE 8080 53/udp 9000-9002\nLABEL "a b"=c version="1 0"\nUSER app\nWORKDIR /w\n').defaults
    assert.deepEqual(b.cmd, ['serve'], 'a CMD of this Dockerfile stays')
    assert.deepEqual(b.entrypoint, ['/bin/sh', '-c', '/init --x'])
    assert.deepEqual(b.exposedPorts, [22, 53, 8080, 9000, 9001, 9002])
    assert.deepEqual(b.labels, { from: 'base', 'a b': 'c', version: '1 0' })
    assert.equal(b.user, 'app')
    assert.equal(b.workingDir, '/w')
  })

  it('indexes every instruction from 0, the ARGs before FROM included', () => {
    const { steps } = plan('# comment\nARG A=1\n\nFROM debian\n# another\nENV X=1\nRUN true\n')
    assert.deepEqual(steps.map((s) => [s.index, s.line, s.kind]), [[0, 2, 'meta'], [1, 4, 'meta'], [2, 6, 'meta'], [3, 7, 'run']])
  })

  it('refuses what it does not build, naming the line and instruction', () => {
    refusal('FROM debian AS a\nRUN true\nFROM debian\n', /line 3 \(FROM\): multi-stage/)
    refusal('FROM debian\nCOPY --from=a /x /y\n', /line 2 \(COPY\): COPY --from/)
    refusal('FROM debian\nONBUILD RUN x\n', /line 2 \(ONBUILD\)/)
    refusal('FROM debian\nHEALTHCHECK CMD true\n', /line 2 \(HEALTHCHECK\)/)
    refusal('FROM debian\nRUN true\nVOLUME /data\n', /line 3 \(VOLUME\)/)
    refusal('FROM debian\nSTOPSIGNAL SIGTERM\n', /line 2 \(STOPSIGNAL\)/)
    refusal('FROM debian\nADD https://example.com/x.tgz /x\n', /line 2 \(ADD\): ADD of a URL/)
    assert.throws(() => parseDockerfile('FROM debian\nADD https://example.com/x.tgz /x\n'), /line 2 \(ADD\): ADD of a URL/, 'refused when parsed, before FROM is pulled')
    refusal('FROM debian\nARG SRC=git@example.com:x.git\nADD $SRC /x\n', /line 3 \(ADD\): ADD of a URL/)
    refusal('FROM debian\nADD <<EOF /x\nhi\nEOF\n', /line 2 \(ADD\): heredocs/)
    refusal('FROM debian\nRUN --mount=type=cache,target=/c true\n', /line 2 \(RUN\): RUN --mount/)
    refusal('FROM debian\nRUN <<EOF\necho hi\nEOF\n', /line 2 \(RUN\): heredocs/)
    refusal('FROM debian\nRUN true\nFROBNICATE x\n', /line 3 \(FROBNICATE\): unknown instruction/)
    refusal('RUN true\nFROM debian\n', /line 1 \(RUN\): expected FROM/)
    refusal('FROM --platform=linux/arm64 debian\n', /line 1 \(FROM\): expected --platform=linux\/amd64/)
    refusal('FROM debian\nCOPY onlyone\n', /line 2 \(COPY\): expected COPY <source>/)
    refusal('FROM debian\nEXPOSE http\n', /line 2 \(EXPOSE\)/)
    refusal('FROM debian\nCOPY --chmod=u+x a /b\n', /line 2 \(COPY\): expected --chmod/)
    refusal('FROM debian\nSHELL /bin/bash\n', /line 2 \(SHELL\): expected the JSON form/)
    refusal('FROM debian\nENV X=${Y:?required}\n', /line 2 \(ENV\): Y: required/)
    refusal('FROM debian\nRUN --network=host true\n', /line 2 \(RUN\): expected --network/)
  })

  it('refuses a Dockerfile without FROM', () => {
    refusal('# nothing\n', /expected a FROM instruction/)
    refusal('ARG A=1\n', /expected a FROM instruction/)
  })

  it('runs RUN --network=none without network', () => {
    const [run] = only(plan('FROM debian\nRUN --network=none true\n').steps, 'run')
    assert.equal(run!.network, false)
    assert.deepEqual(run!.argv, ['/bin/sh', '-c', 'true'])
  })
})
