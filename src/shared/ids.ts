import { randomFillSync } from 'node:crypto'

const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'

/**
 * Random bytes taken 16 at a time: every request gets an id, and one randomBytes(16) call costs
 * about thirty times its share of a refill of this pool (the same CSPRNG).
 */
const pool = Buffer.alloc(4096)
let taken = pool.length

/** A random id such as `sb-k3j9x0q2m1c8v7d4`: a prefix and 16 lowercase letters and digits. */
export function newId(prefix: string): string {
  if (taken + 16 > pool.length) {
    randomFillSync(pool)
    taken = 0
  }
  let out = ''
  for (let i = taken; i < taken + 16; i++) out += alphabet[pool[i]! % alphabet.length]
  taken += 16
  return `${prefix}-${out}`
}

/** Ids are used in paths and cgroup names, so only this exact shape is ever accepted. */
export const idPattern = /^[a-z]{2,4}-[a-z0-9]{16}$/
