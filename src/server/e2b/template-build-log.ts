/**
 * A Sandstorm build's events as E2B's build log: one entry per line of output or progress, each
 * with the e2b step it belongs to, and the end as E2B's status and reason. A failed step's reason
 * names the step as the user wrote it ("step 2 (RUN make)"), and the SDK points at its line.
 */
import type { TemplateBuildEvent } from '../../shared/index.js'
import type { DockerfilePlan } from './template-build-dockerfile.js'
import { maxLineChars } from './template-build-store.js'
import type { TemplateBuildRecord, TemplateBuildStore } from './template-build-store.js'
import type { BuildStatusReason, TemplateStep } from './template-build-wire.js'

/** What a build's events became. */
export interface BuildEventLog {
  /** Takes one event of the build. */
  emit(event: TemplateBuildEvent): void
  /** How the build ended: `ready` after `done`; `error` with a reason after `error` or no end at all. */
  end(): { status: 'ready' | 'error'; reason?: BuildStatusReason }
}

/** Longest a step's command is quoted in a message. */
const maxQuotedChars = 120
/** Lines of a failed step's output its message shows. */
const shownLines = 5
/** Most lines of a failed step's output carried in its reason. */
const maxReasonLines = 40


/** The log of `build`, from its events; `plan.stepOf` maps the Dockerfile's lines back to the template's steps. */
export function buildEventLog(store: Pick<TemplateBuildStore, 'log'>, build: TemplateBuildRecord, steps: TemplateStep[], plan: Pick<DockerfilePlan, 'stepOf'>): BuildEventLog {
  let ended: ReturnType<BuildEventLog['end']> | undefined
  // Output comes in chunks; a line is logged once whole (or at its step's end).
  const partial = new Map<string, string>()
  const stepLines = new Map<string, string[]>()
  const stepOf = (index: number): string | undefined => plan.stepOf[index]

  const line = (index: number, text: string): void => {
    const step = stepOf(index)
    store.log(build, 'info', text, step)
    if (step === undefined) return
    const lines = stepLines.get(step) ?? []
    lines.push(text)
    if (lines.length > maxReasonLines) lines.shift()
    stepLines.set(step, lines)
  }
  const flush = (index: number): void => {
    for (const stream of ['stdout', 'stderr']) {
      const key = `${index}:${stream}`
      const rest = partial.get(key)
      if (rest) line(index, rest)
      partial.delete(key)
    }
  }
  /** "step 2 (RUN make all)": the step as the template's builder call made it. */
  const describe = (step: string): string => {
    if (step === 'base') return 'the base (FROM)'
    const s = steps[Number(step) - 1]
    if (!s) return `step ${step}`
    const quoted = s.args[0] ?? ''
    return `step ${step} (${s.type} ${quoted.length > maxQuotedChars ? `${quoted.slice(0, maxQuotedChars - 3)}...` : quoted})`
  }

  return {
    emit(event) {
      switch (event.type) {
        case 'step': {
          const step = stepOf(event.index)
          store.log(build, 'info', `${step !== undefined ? `${describe(step)}: ` : ''}${event.cmd}${event.cached ? ' (cached)' : ''}`, step)
          return
        }
        case 'progress':
          store.log(build, 'info', event.message)
          return
        case 'stdout':
        case 'stderr': {
          const key = `${event.index}:${event.type}`
          const text = (partial.get(key) ?? '') + Buffer.from(event.data, 'base64').toString('utf8')
          const lines = text.split('\n')
          let rest = lines.pop()!
          for (const l of lines) line(event.index, l)
          // Output without a newline is logged in pieces as long as the log keeps a line: kept whole, each chunk split it all again.
          for (; rest.length > maxLineChars; rest = rest.slice(maxLineChars)) line(event.index, rest.slice(0, maxLineChars))
          partial.set(key, rest)
          return
        }
        case 'step_end':
          flush(event.index)
          if (event.exitCode !== 0) store.log(build, 'error', `exited with code ${event.exitCode}`, stepOf(event.index))
          return
        case 'done':
          store.log(build, 'info', `template ${event.template.name} version ${event.template.version} built`, 'finalize')
          ended = { status: 'ready' }
          return
        case 'error': {
          const step = event.step ? stepOf(event.step.index) : undefined
          if (event.step) flush(event.step.index)
          // The builder's message names its Dockerfile line; the user wrote steps, so name the step.
          const tail = event.step?.output.trim().split('\n').slice(-shownLines).join('\n')
          const message = step !== undefined && event.step ? `${describe(step)} failed with exit code ${event.step.exitCode}: ${tail || '(no output)'}` : event.message
          store.log(build, 'error', message, step)
          const output = step !== undefined ? (stepLines.get(step) ?? []) : []
          const at = new Date().toISOString()
          ended = {
            status: 'error',
            reason: {
              message,
              ...(step !== undefined ? { step } : {}),
              logEntries: output.map((text) => ({ timestamp: at, level: 'info' as const, message: text, ...(step !== undefined ? { step } : {}) })),
            },
          }
          return
        }
      }
    },
    end() {
      return ended ?? { status: 'error', reason: { message: 'the build ended without saying how (no done or error event)' } }
    },
  }
}
