/** The error of a build step that exited non-zero, carrying the step for the build's error event. */
import { SandstormError } from '../../shared/index.js'
import type { FailedBuildStep } from '../../shared/index.js'

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
