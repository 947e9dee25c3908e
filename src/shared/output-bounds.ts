/**
 * What one kept output event costs beyond its bytes (the object, its base64 string, its slot in a
 * queue): counted with them wherever output is held for a reader, so that a process that prints a
 * byte at a time is held to some thousands of events, not millions.
 */
export const outputEventOverheadBytes = 256

/**
 * What a file helper run in a sandbox may print on stdout (a listing of some 300,000 entries).
 * Its code can replace the helper, or write into its stdout: without a bound, one that prints for
 * ever would fill the host's memory.
 */
export const maxHelperStdoutBytes = 64 * 1024 * 1024
/** What is kept of a helper's stderr: its first bytes, where the error that ended it is named. */
export const maxHelperStderrBytes = 64 * 1024
