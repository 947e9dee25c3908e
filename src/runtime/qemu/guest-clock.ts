/**
 * The guest's time source under TCG. A TCG guest reads the host's TSC (QEMU passes `rdtsc`
 * through), but microvm gives it no HPET and no ACPI PM timer to measure that TSC against: the
 * kernel calibrates against the PIT alone, and on a loaded host the PIT reads (each one a trip
 * through the emulator) come too slowly, so calibration fails, the TSC is marked unstable and
 * boot stalls with timestamps stuck at 0.000000. Telling the kernel the frequency removes the step.
 */
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

let cached: number | null | undefined

/**
 * The host TSC frequency in kHz: the kernel's own refined calibration from its log when it is
 * still there, else `cpu MHz` (on a virtual host with `tsc_known_freq` that is the TSC rate);
 * null when neither is known.
 */
export function hostTscKHz(): number | null {
  if (cached !== undefined) return cached
  cached = parseTscKHz(kernelLog(), readCpuinfo())
  return cached
}

/** Picks the TSC frequency out of a kernel log and /proc/cpuinfo (exported for tests). */
export function parseTscKHz(kernelLogText: string, cpuinfo: string): number | null {
  // Whole lines, the first of each (the boot's own): any process can put text into the kernel log
  // (a segfault's report names the file it ran in), and a sandbox's line must not set the guests' clock.
  const refined = /^\[\s*\d+\.\d+\] tsc: Refined TSC clocksource calibration: (\d+\.\d+) MHz$/m.exec(kernelLogText)
  const detected = /^\[\s*\d+\.\d+\] tsc: Detected (\d+\.\d+) MHz processor$/m.exec(kernelLogText)
  const fromLog = refined?.[1] ?? detected?.[1]
  if (fromLog) return Math.round(Number(fromLog) * 1000)
  const mhz = /^cpu MHz\s*:\s*(\d+(?:\.\d+)?)/m.exec(cpuinfo)?.[1]
  return mhz ? Math.round(Number(mhz) * 1000) : null
}

function kernelLog(): string {
  try {
    // Synchronous, once per process: the clock is read where no await can wait.
    return spawnSync('dmesg', [], { timeout: 2000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).stdout ?? ''
  } catch {
    return ''
  }
}

function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8')
  } catch {
    return ''
  }
}

/**
 * Kernel command line pieces for the guest's clock: the TSC frequency when known (TCG), the TSC
 * trusted (every vCPU reads the same host TSC, so it is synchronised), and no IO-APIC timer
 * check (it races the emulator on a loaded host and panics).
 */
export function clockCmdline(accel: 'kvm' | 'tcg'): string[] {
  if (accel === 'kvm') return []
  const khz = hostTscKHz()
  return [...(khz ? [`tsc_early_khz=${khz}`] : []), 'tsc=reliable', 'no_timer_check']
}
