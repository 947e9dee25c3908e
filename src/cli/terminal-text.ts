/**
 * Text from elsewhere (a server's error, an agent's hostname, a guest's build output) made safe to
 * print on a terminal. A guest or an image controls some of that text, and control characters in
 * it would be obeyed by the terminal: ESC starts sequences that move the cursor, rewrite earlier
 * lines, set the window title or (on some terminals) write files or the clipboard; CR overwrites a
 * line; C1 code points (U+0080–U+009F) are the 8-bit forms of the same sequences. Each such
 * character is shown instead as a visible escape, `\x1b` for ESC: the text stays readable and
 * nothing in it is obeyed. Tab always stays; newline stays only where the caller prints several lines.
 */
/** C0 controls but tab and newline, DEL, and C1; newline is handled apart (see printable). */
const controls = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g

/** Options of printable. */
export interface PrintableOptions {
  /** Keep `\n` (and turn `\r\n` into it), for text printed as several lines. @default false: `\n` is escaped too */
  multiline?: boolean
}

/** `text` with every control character but tab (and newline, when multiline) as a visible `\xNN`. */
export function printable(text: string, options: PrintableOptions = {}): string {
  const kept = options.multiline ? text.replace(/\r\n/g, '\n') : text.replace(/\n/g, '\\x0a')
  return kept.replace(controls, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

/** The first line of an error's message, printable: what the CLI shows of an error it did not make. */
export function errorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return printable(message.split('\n')[0]!)
}

/**
 * A writer of another program's output bytes to `out`. Bytes go as they are when `out` is not a
 * terminal (a pipe or a file gets exactly what the program wrote, as with `docker build`); on a
 * terminal they are decoded as UTF-8 and made printable (multiline), so a program in a sandbox
 * cannot drive the user's terminal.
 */
export function createOutputWriter(out: NodeJS.WritableStream & { isTTY?: boolean }): (chunk: Uint8Array) => void {
  if (!out.isTTY) return (chunk) => void out.write(chunk)
  // Holds back a character split across chunks (a CRLF split across two shows its CR escaped).
  // TextDecoder, a global: this module is evaluated at every start, before any command (errorLine).
  const decoder = new TextDecoder()
  return (chunk) => {
    const text = decoder.decode(chunk, { stream: true })
    if (text !== '') out.write(printable(text, { multiline: true }))
  }
}
