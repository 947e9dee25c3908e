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
  const size = headerBytes + code.length + path.length
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
  code.copy(elf, headerBytes)
  path.copy(elf, headerBytes + code.length)
  return elf
}
