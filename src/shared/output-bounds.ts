/**
 * What one kept output event costs beyond its bytes (the object, its base64 string, its slot in a
 * queue): counted with them wherever output is held for a reader, so that a process that prints a
 * byte at a time is held to some thousands of events, not millions.
 */
export const outputEventOverheadBytes = 256
