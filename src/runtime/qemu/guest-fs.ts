/**
 * File operations inside the guest: the shared busybox scripts (src/runtime/busybox-fs.ts) with
 * the guest's own busybox, run by the guest agent, and their output parsed into entries.
 */
import { busyboxFsScripts, fsError, parseListing, parseStat } from '../busybox-fs.js'
import { guestBusybox as bb } from './guest-scripts.js'

/** One script per operation. */
export const guestFsScripts = {
  ...busyboxFsScripts(bb),
  parentOf: `exec ${bb} mkdir -p -- "$(${bb} dirname -- "$1")"`,
} as const

/** A failed operation's message (script stderr or guest agent error) as a coded error. */
export const guestFsError = fsError
/** Parses one `stat -c '%f %s %Y %u %g'` line. */
export const parseGuestStat = parseStat
/** Parses the list script's output. */
export const parseGuestListing = parseListing
