import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { compileSeccompProgram, sandboxSeccompProgram } from './seccomp-program.js'
import { seccompRuleLines, type OciLinuxSeccomp } from './seccomp.js'

describe('the compiled seccomp program', () => {
  it('writes the profile as one rule line per syscall name, conditions kept', () => {
    const profile: OciLinuxSeccomp = {
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 1,
      architectures: ['SCMP_ARCH_X86_64'],
      syscalls: [
        { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
        { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
        { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
      ],
    }
    assert.equal(seccompRuleLines(profile), 'default 1\nallow read\nallow write\nallow clone 0 masked_eq 2114060288 0\nerrno 38 clone3\n')
  })

  it('refuses what the compiler does not take: other actions, other architectures, odd names', () => {
    const base: OciLinuxSeccomp = { defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: [] }
    assert.throws(() => seccompRuleLines({ ...base, defaultAction: 'SCMP_ACT_ALLOW' }), /SCMP_ACT_ERRNO default/)
    assert.throws(() => seccompRuleLines({ ...base, architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] }), /native x86_64/)
    assert.throws(() => seccompRuleLines({ ...base, syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_TRACE' }] }), /allow or errno/)
    assert.throws(() => seccompRuleLines({ ...base, syscalls: [{ names: ['read\nallow mount'], action: 'SCMP_ACT_ALLOW' }] }), /not a syscall name/)
  })

  it("compiles the sandbox profile once into a program that starts with runc's ENOSYS check", async () => {
    {
      const program = await sandboxSeccompProgram()
      assert.equal(program.length % 8, 0)
      assert.ok(program.length / 8 > 50 && program.length / 8 <= 4096, `${program.length / 8} instructions`)
      // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k. First: load the arch; then jump unless x86_64.
      assert.equal(program.readUInt16LE(0), 0x20) // BPF_LD | BPF_W | BPF_ABS
      assert.equal(program.readUInt32LE(4), 4) // offsetof(struct seccomp_data, arch)
      assert.equal(program.readUInt32LE(12), 0xc000003e) // AUDIT_ARCH_X86_64
      // Sixth: return ERRNO(ENOSYS).
      assert.equal(program.readUInt16LE(40), 0x06) // BPF_RET | BPF_K
      assert.equal(program.readUInt32LE(44), 0x00050000 | 38)
    }
  })

  it('a malformed rule is refused with its line', async () => {
    await assert.rejects(compileSeccompProgram('default 1\nallow read\nallow clone 0 between 1 2\n'), /line 3: a malformed condition/)
    await assert.rejects(compileSeccompProgram('allow read\n'), /line 1: expected the default first/)
  })
})
