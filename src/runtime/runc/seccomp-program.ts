/** The sandboxes' seccomp filter, compiled once per backend instead of by runc on every start. */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { SandstormError } from '../../shared/index.js'
import { defaultCapabilities } from './capabilities.js'
import { hostHelpers } from './layout.js'
import { defaultSeccompProfile, seccompRuleLines } from './seccomp.js'

/**
 * The sandbox profile compiled by native/seccomp-bpf.c (libseccomp, as runc would): the program
 * that every sandbox's init reads on its fd 4 and loads before anything else runs in the sandbox.
 */
export function sandboxSeccompProgram(): Promise<Buffer> {
  return compileSeccompProgram(seccompRuleLines(defaultSeccompProfile(defaultCapabilities)))
}

/** Compiles rule lines (see seccompRuleLines) into a BPF program. */
export async function compileSeccompProgram(rules: string): Promise<Buffer> {
  const child = spawn(hostHelpers.seccompBpf, [], { stdio: ['pipe', 'pipe', 'pipe'] })
  const out: Buffer[] = []
  let complaint = ''
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
  child.stderr.setEncoding('utf8').on('data', (text: string) => (complaint += text))
  child.stdin.end(rules)
  const [code] = (await once(child, 'close').catch((err: unknown) => {
    throw new SandstormError('internal', `compiling the sandboxes' seccomp filter failed: ${String(err)} (run \`npm run build\`)`)
  })) as [number | null]
  const program = Buffer.concat(out)
  // struct sock_filter is 8 bytes; the kernel takes at most 4096 of them.
  if (code !== 0 || program.length === 0 || program.length % 8 !== 0 || program.length > 4096 * 8) {
    throw new SandstormError('internal', `compiling the sandboxes' seccomp filter failed: ${complaint.trim() || `exit ${code}, ${program.length} bytes`}`)
  }
  return program
}
