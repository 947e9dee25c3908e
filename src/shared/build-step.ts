/** What a failed build step (a golden build's step, a Dockerfile's RUN) reports: its error and the end of its output. */
import { Buffer } from 'node:buffer'
import { SandstormError } from './errors.js'
import type { FailedBuildStep } from '@sandstorm/sdk/wire'

/** How many of the failed step's last output lines the message shows. */
const shownLines = 5

/** A build step that exited non-zero: `failed_precondition`, naming the step and showing its last lines. */
export class BuildStepFailed extends SandstormError {
  constructor(
    readonly step: FailedBuildStep,
    count: number,
  ) {
    super('failed_precondition', `build step ${step.index + 1} of ${count} (${JSON.stringify(step.cmd)}) failed with exit code ${step.exitCode}: ${step.output.trim().split('\n').slice(-shownLines).join('\n') || '(no output)'}`)
  }
}

/** The last bytes of a step's stdout and stderr (the end says why it failed). */
export class OutputTail {
  private kept: Buffer = Buffer.alloc(0)

  /** @param maxBytes how much is kept. @default 64 KiB */
  constructor(private readonly maxBytes = 64 * 1024) {}

  push(data: Uint8Array): void {
    const joined = Buffer.concat([this.kept, data])
    this.kept = joined.subarray(Math.max(0, joined.length - this.maxBytes))
  }

  text(): string {
    return this.kept.toString('utf8')
  }
}
