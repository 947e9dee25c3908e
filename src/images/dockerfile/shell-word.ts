/**
 * Docker's word processing for the instructions it expands (ENV, ARG, LABEL, COPY, ADD, WORKDIR,
 * USER, EXPOSE, FROM): quotes removed, the escape character honoured, `$VAR`, `${VAR}`,
 * `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?message}` and `${VAR?message}`
 * substituted. It follows BuildKit's `shell/lex.go` (the reference for what a Dockerfile means);
 * no parser library does this part, dockerfile-ast only finds the instructions and their words.
 */
import { SandstormError } from '../../shared/index.js'

/** Variables in effect for a substitution: null-prototype record, absent = unset. */
export type WordEnv = Readonly<Record<string, string>>

/** Options of expandWord. */
export interface ExpandWordOptions {
  /** The Dockerfile's escape character (the `# escape=` directive). @default '\\' */
  escapeChar?: string
  /** What the word belongs to, for messages ("line 4 (ENV)"). @default 'the word' */
  where?: string
}

/** `word` with its quotes removed and its variables substituted from `env`. */
export function expandWord(word: string, env: WordEnv, options: ExpandWordOptions = {}): string {
  return new WordLexer(word, env, options.escapeChar ?? '\\', options.where ?? 'the word').word()
}

/**
 * `text` split into words at unquoted white space, each processed as expandWord does (Docker's
 * ProcessWords: what `ENV key value` and EXPOSE see).
 */
export function expandWords(text: string, env: WordEnv, options: ExpandWordOptions = {}): string[] {
  return new WordLexer(text, env, options.escapeChar ?? '\\', options.where ?? 'the word').words()
}

const nameChar = /[A-Za-z0-9_]/

class WordLexer {
  private pos = 0
  constructor(
    private readonly text: string,
    private readonly env: WordEnv,
    private readonly escape: string,
    private readonly where: string,
  ) {}

  word(): string {
    return this.until(null)
  }

  words(): string[] {
    const out: string[] = []
    let current = ''
    let started = false
    while (this.pos < this.text.length) {
      const ch = this.text[this.pos]!
      if (/\s/.test(ch)) {
        this.pos++
        if (started) out.push(current)
        current = ''
        started = false
        continue
      }
      started = true
      current += this.one()
    }
    if (started) out.push(current)
    return out
  }

  private fail(what: string): never {
    throw new SandstormError('invalid_argument', `${this.where}: ${what} in ${JSON.stringify(this.text)}`)
  }

  /** Reads up to `stop` (not consumed by the caller's loop here: consumed) or the end. */
  private until(stop: string | null): string {
    let out = ''
    while (this.pos < this.text.length) {
      if (stop !== null && this.text[this.pos] === stop) {
        this.pos++
        return out
      }
      out += this.one()
    }
    if (stop !== null) this.fail(`expected a closing ${JSON.stringify(stop)}, got the end`)
    return out
  }

  /** One unquoted unit: an escaped char, a quoted string, a substitution or a plain char. */
  private one(): string {
    const ch = this.text[this.pos]!
    if (ch === this.escape) {
      this.pos++
      // An escape at the very end is dropped, as Docker does.
      if (this.pos >= this.text.length) return ''
      return this.text[this.pos++]!
    }
    if (ch === "'") return this.singleQuoted()
    if (ch === '"') return this.doubleQuoted()
    if (ch === '$') return this.dollar()
    this.pos++
    return ch
  }

  private singleQuoted(): string {
    const end = this.text.indexOf("'", this.pos + 1)
    if (end === -1) this.fail('expected a closing single quote, got the end')
    const out = this.text.slice(this.pos + 1, end)
    this.pos = end + 1
    return out
  }

  private doubleQuoted(): string {
    this.pos++
    let out = ''
    for (;;) {
      if (this.pos >= this.text.length) this.fail('expected a closing double quote, got the end')
      const ch = this.text[this.pos]!
      if (ch === '"') {
        this.pos++
        return out
      }
      if (ch === '$') {
        out += this.dollar()
        continue
      }
      this.pos++
      if (ch === this.escape && this.pos < this.text.length) {
        const next = this.text[this.pos]!
        // Only these may be escaped inside double quotes; other escapes stay as written.
        if (next === '"' || next === '$' || next === this.escape) {
          this.pos++
          out += next
          continue
        }
      }
      out += ch
    }
  }

  private dollar(): string {
    this.pos++ // the '$'
    if (this.text[this.pos] !== '{') {
      const name = this.name()
      return name === '' ? '$' : (this.env[name] ?? '')
    }
    this.pos++ // the '{'
    const name = this.name()
    if (name === '') this.fail('expected a variable name after "${"')
    const ch = this.text[this.pos]
    if (ch === '}') {
      this.pos++
      return this.env[name] ?? ''
    }
    const colon = ch === ':'
    if (colon) this.pos++
    const op = this.text[this.pos]
    if (op !== '-' && op !== '+' && op !== '?') this.fail(`expected "}", ":-", ":+", ":?", "-", "+" or "?" after "\${${name}", got ${JSON.stringify(this.text.slice(this.pos, this.pos + 1) || 'the end')}`)
    this.pos++
    const word = this.until('}')
    const value = this.env[name]
    const set = colon ? value !== undefined && value !== '' : value !== undefined
    if (op === '-') return set ? value! : word
    if (op === '+') return set ? word : ''
    if (!set) this.fail(`${name}: ${word || 'is not set'}`)
    return value!
  }

  private name(): string {
    const start = this.pos
    while (this.pos < this.text.length && nameChar.test(this.text[this.pos]!)) this.pos++
    return this.text.slice(start, this.pos)
  }
}
