import { randomBytes } from 'node:crypto'

const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'

/** A random id such as `sb-k3j9x0q2m1c8v7d4`: a prefix and 16 lowercase letters and digits. */
export function newId(prefix: string): string {
  const bytes = randomBytes(16)
  let out = ''
  for (const b of bytes) out += alphabet[b % alphabet.length]
  return `${prefix}-${out}`
}

/** Ids are used in paths and cgroup names, so only this exact shape is ever accepted. */
export const idPattern = /^[a-z]{2,4}-[a-z0-9]{16}$/
