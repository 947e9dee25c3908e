/** Defaults of an agent that its CLI flags show too (the CLI holds no host code, so they live here). */

/**
 * Spare disks an agent keeps unless told otherwise: as many as a fork of 8 takes. With 2, the six
 * others of a fork of 8 each made their disk on the spot, one after another in one shell.
 */
export const defaultSpareDisks = 8
