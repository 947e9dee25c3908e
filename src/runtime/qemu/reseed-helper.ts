/**
 * A 180-byte static x86-64 program that asks the guest kernel to reseed its CRNG now
 * (`ioctl(open("/dev/urandom"), RNDRESEEDCRNG)`), exiting with 0 or the errno. Clones of one saved
 * machine start with the same CRNG state; mixing host randomness into the pool is not enough until
 * the kernel reseeds, which it otherwise does on a timer. No interpreter in the guest does this
 * quickly under TCG (perl took 0.6–2 s in a fresh clone), hence machine code, written here by hand
 * so that no compiler is needed.
 */

const base = 0x400000
const headerBytes = 64 + 56

// mov eax,2; lea rdi,[rip+path]; mov esi,1 (O_WRONLY); syscall (open)
// mov edi,eax; mov eax,16; mov esi,0x5207 (RNDRESEEDCRNG); xor edx,edx; syscall (ioctl)
// mov edi,eax; neg edi; mov eax,60; syscall (exit with -result)
const code = Buffer.from([
  0xb8, 0x02, 0x00, 0x00, 0x00,
  0x48, 0x8d, 0x3d, 0x22, 0x00, 0x00, 0x00,
  0xbe, 0x01, 0x00, 0x00, 0x00,
  0x0f, 0x05,
  0x89, 0xc7,
  0xb8, 0x10, 0x00, 0x00, 0x00,
  0xbe, 0x07, 0x52, 0x00, 0x00,
  0x31, 0xd2,
  0x0f, 0x05,
  0x89, 0xc7,
  0xf7, 0xdf,
  0xb8, 0x3c, 0x00, 0x00, 0x00,
  0x0f, 0x05,
])
const path = Buffer.from('/dev/urandom\0')

/** The program's bytes: an ELF header, one loadable segment, the code and its one string. */
export function reseedHelper(): Buffer {
  return staticElf(Buffer.concat([code, path]))
}

/**
 * A static x86-64 program that gives a restored clone its identity in one exec, with no shell and
 * no dynamic linking (each new program a fresh clone runs is translated anew under TCG): it reads
 * an identityRecord from stdin, then `clock_settime(CLOCK_REALTIME)`, `sethostname`, writes the
 * seed to /dev/urandom and reseeds the CRNG from it. Exits 0, an errno, or 100 on a short record.
 * Assembled from this (GNU as, Intel syntax), its bytes kept here so that no toolchain is needed:
 *
 *   sub rsp,160; xor r12d,r12d
 *   1: read(0, rsp+r12, 152-r12); until 152 bytes or EOF (jle 2f)
 *   2: eax=-100; r12 != 152 -> 9f
 *   clock_settime(0, rsp)            (227)  nonzero -> 9f
 *   sethostname(rsp+24, [rsp+16])    (170)  nonzero -> 9f
 *   ebx = open("/dev/urandom", O_WRONLY)  (2)  negative -> 9f
 *   write(ebx, rsp+88, 64)            (1)   negative -> 9f
 *   ioctl(ebx, RNDRESEEDCRNG, 0)      (16)
 *   9: exit(-eax)                     (60)
 */
export function identityHelper(): Buffer {
  return staticElf(identityCode)
}

/** Bytes of an identityRecord. */
export const identityRecordBytes = 152

/** What the identity helper reads: time (seconds, nanoseconds), hostname (length, 64 bytes), 64 bytes of seed. */
export function identityRecord(hostname: string, seed: Uint8Array, nowMs: number): Buffer {
  const name = Buffer.from(hostname, 'ascii').subarray(0, 64)
  if (seed.length !== 64) throw new Error(`identityRecord expected a 64-byte seed, got ${seed.length}`)
  const record = Buffer.alloc(identityRecordBytes)
  record.writeBigUInt64LE(BigInt(Math.floor(nowMs / 1000)), 0)
  record.writeBigUInt64LE(BigInt(Math.round((nowMs % 1000) * 1e6)), 8)
  record.writeBigUInt64LE(BigInt(name.length), 16)
  name.copy(record, 24)
  Buffer.from(seed).copy(record, 88)
  return record
}

const identityCode = Buffer.from([
  0x48, 0x81, 0xec, 0xa0, 0x00, 0x00, 0x00, 0x45, 0x31, 0xe4, 0x31, 0xc0,
  0x31, 0xff, 0x4a, 0x8d, 0x34, 0x24, 0xba, 0x98, 0x00, 0x00, 0x00, 0x44,
  0x29, 0xe2, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x7e, 0x0c, 0x49, 0x01, 0xc4,
  0x49, 0x81, 0xfc, 0x98, 0x00, 0x00, 0x00, 0x72, 0xdd, 0xb8, 0x9c, 0xff,
  0xff, 0xff, 0x49, 0x81, 0xfc, 0x98, 0x00, 0x00, 0x00, 0x75, 0x69, 0xb8,
  0xe3, 0x00, 0x00, 0x00, 0x31, 0xff, 0x48, 0x89, 0xe6, 0x0f, 0x05, 0x48,
  0x85, 0xc0, 0x75, 0x58, 0xb8, 0xaa, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x7c,
  0x24, 0x18, 0x48, 0x8b, 0x74, 0x24, 0x10, 0x0f, 0x05, 0x48, 0x85, 0xc0,
  0x75, 0x42, 0xb8, 0x02, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d, 0x41, 0x00,
  0x00, 0x00, 0xbe, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0,
  0x78, 0x2a, 0x89, 0xc3, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x89, 0xdf, 0x48,
  0x8d, 0x74, 0x24, 0x58, 0xba, 0x40, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48,
  0x85, 0xc0, 0x78, 0x10, 0xb8, 0x10, 0x00, 0x00, 0x00, 0x89, 0xdf, 0xbe,
  0x07, 0x52, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x05, 0x89, 0xc7, 0xf7, 0xdf,
  0xb8, 0x3c, 0x00, 0x00, 0x00, 0x0f, 0x05,
  // "/dev/urandom\0", read rip-relative by the open above
  0x2f, 0x64, 0x65, 0x76, 0x2f,
  0x75, 0x72, 0x61, 0x6e, 0x64, 0x6f, 0x6d, 0x00,
])

/** A static ELF with one read+execute segment holding `program` (code, then its strings), entered at its start. */
function staticElf(program: Buffer): Buffer {
  const size = headerBytes + program.length
  const elf = Buffer.alloc(size)
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(elf, 0)
  elf.writeUInt16LE(2, 16) // ET_EXEC
  elf.writeUInt16LE(0x3e, 18) // x86-64
  elf.writeUInt32LE(1, 20)
  elf.writeBigUInt64LE(BigInt(base + headerBytes), 24) // entry
  elf.writeBigUInt64LE(64n, 32) // program headers right after this header
  elf.writeUInt16LE(64, 52)
  elf.writeUInt16LE(56, 54)
  elf.writeUInt16LE(1, 56)
  elf.writeUInt32LE(1, 64) // PT_LOAD
  elf.writeUInt32LE(5, 68) // read + execute
  elf.writeBigUInt64LE(BigInt(base), 80)
  elf.writeBigUInt64LE(BigInt(base), 88)
  elf.writeBigUInt64LE(BigInt(size), 96)
  elf.writeBigUInt64LE(BigInt(size), 104)
  elf.writeBigUInt64LE(0x1000n, 112)
  program.copy(elf, headerBytes)
  return elf
}
