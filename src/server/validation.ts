import type { z } from 'zod'
import { SandstormError } from '../shared/index.js'

/**
 * Parses untrusted input with a schema of the wire API. Bad input becomes one `invalid_argument`
 * error whose message names the field, what was expected and what came, e.g.
 * `memoryMiB: expected an integer from 16 to 65536, got 0`.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input)
  if (result.success) return result.data
  const messages = result.error.issues.map((issue) => describeIssue(schema, input, issue))
  throw new SandstormError('invalid_argument', messages.join('; '))
}

/** Parses a JSON request body; an empty body is `{}` so that bodies of only defaults may be left out. */
export function parseJsonText(text: string): unknown {
  if (text.trim() === '') return {}
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new SandstormError('invalid_argument', `body: expected JSON, got ${show(text)} (${(err as Error).message})`)
  }
}

/** Renders a value for a message: JSON, cut short. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing'
  const text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

// zod's issue shapes, narrowed to what the messages need.
type Issue = z.core.$ZodIssue

function describeIssue(root: z.ZodType, input: unknown, issue: Issue): string {
  const path = issue.path.map(String)
  const value = valueAt(input, path)
  const where = path.length === 0 ? 'body' : path.join('.')
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = Object.keys(shapeOf(schemaAt(root, path)) ?? {})
      const unknown = issue.keys.map((k) => `unknown field "${k}"`).join(', ')
      return `${where === 'body' ? '' : `${where}: `}${unknown}: expected only ${allowed.join(', ')}`
    }
    case 'invalid_type': {
      const expected = (issue.expected === 'number' && describeNumber(schemaAt(root, path))) || article(issue.expected)
      return `${where}: expected ${expected}, got ${show(value)}`
    }
    case 'too_small':
    case 'too_big': {
      const expected = describeNumber(schemaAt(root, path)) ?? sizeBound(issue)
      return `${where}: expected ${expected}, got ${show(value)}`
    }
    case 'invalid_value':
      return `${where}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${show(value)}`
    case 'invalid_key': {
      const inner = issue.issues[0]
      const expected = inner?.code === 'invalid_format' || inner?.code === 'custom' ? inner.message : 'a valid key'
      return `${where}: expected the key to be ${expected}, got ${show(path.at(-1))}`
    }
    case 'invalid_format':
    case 'custom':
      // The shared schemas word these messages as the thing expected ("an absolute path").
      return `${where}: expected ${issue.message}, got ${show(value)}`
    default:
      return `${where}: ${issue.message}, got ${show(value)}`
  }
}

function sizeBound(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const small = issue.code === 'too_small'
  const bound = small ? (issue as z.core.$ZodIssueTooSmall).minimum : (issue as z.core.$ZodIssueTooBig).maximum
  const plural = Number(bound) === 1 ? '' : 's'
  const unit = issue.origin === 'string' ? ` character${plural}` : issue.origin === 'array' ? ` item${plural}` : ''
  return `${small ? 'at least' : 'at most'} ${String(bound)}${unit}`
}

/** "an integer from 16 to 65536", read from the number schema's own checks. */
function describeNumber(schema: z.ZodType | undefined): string | undefined {
  const def = schema?._zod.def as { type: string; checks?: { _zod: { def: unknown } }[] } | undefined
  if (def?.type !== 'number') return undefined
  let integer = false
  let min: { value: number; inclusive: boolean } | undefined
  let max: { value: number; inclusive: boolean } | undefined
  for (const check of def.checks ?? []) {
    const c = check._zod.def as { check: string; format?: string; value?: number; inclusive?: boolean }
    if (c.check === 'number_format' && (c.format === 'safeint' || c.format === 'int32')) integer = true
    if (c.check === 'greater_than') min = { value: Number(c.value), inclusive: c.inclusive === true }
    if (c.check === 'less_than') max = { value: Number(c.value), inclusive: c.inclusive === true }
  }
  const noun = integer ? 'an integer' : 'a number'
  // An integer above n is an integer from n + 1; say it the simple way.
  if (integer && min && !min.inclusive) min = { value: min.value + 1, inclusive: true }
  if (integer && max && !max.inclusive) max = { value: max.value - 1, inclusive: true }
  if (min?.inclusive && max?.inclusive) return `${noun} from ${min.value} to ${max.value}`
  const parts = [
    min && (min.inclusive ? `at least ${min.value}` : `greater than ${min.value}`),
    max && (max.inclusive ? `at most ${max.value}` : `less than ${max.value}`),
  ].filter(Boolean)
  return parts.length === 0 ? noun : `${noun} ${parts.join(' and ')}`
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`
}

function valueAt(input: unknown, path: string[]): unknown {
  let v = input
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<string, unknown>)[key]
  }
  return v
}

/** The schema that validates the value at `path`, looking through optional, default and the like. */
function schemaAt(root: z.ZodType, path: string[]): z.ZodType | undefined {
  let schema: z.ZodType | undefined = unwrap(root)
  for (const key of path) {
    if (!schema) return undefined
    const def = schema._zod.def as { type: string; valueType?: z.ZodType; element?: z.ZodType }
    if (def.type === 'object' || def.type === 'union') schema = shapeOf(schema)?.[key]
    else if (def.type === 'record') schema = def.valueType
    else if (def.type === 'array') schema = def.element
    else return undefined
    schema = schema && unwrap(schema)
  }
  return schema
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema
  for (;;) {
    const def = s._zod.def as { type: string; innerType?: z.ZodType; in?: z.ZodType }
    if (def.innerType && ['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'nonoptional'].includes(def.type)) s = def.innerType
    else if (def.type === 'pipe' && def.in) s = def.in
    else return s
  }
}

/** The fields of an object schema; of a union (`'none' | { ... }`), those of its object option. */
function shapeOf(schema: z.ZodType | undefined): Record<string, z.ZodType> | undefined {
  const def = schema?._zod.def as { type: string; shape?: Record<string, z.ZodType>; options?: z.ZodType[] } | undefined
  if (def?.type === 'union') return def.options?.map((o) => shapeOf(unwrap(o))).find((shape) => shape !== undefined)
  return def?.type === 'object' ? def.shape : undefined
}
