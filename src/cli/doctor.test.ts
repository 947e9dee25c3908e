import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { accelChoice, checkCgroups, runDoctor } from './doctor.js'

describe('doctor', () => {
  it('picks tcg on a VM, kvm on bare metal, and what --accel asks for', () => {
    assert.equal(accelChoice('auto', { kvm: true, hypervisor: true }).accel, 'tcg')
    assert.match(accelChoice('auto', { kvm: true, hypervisor: true }).reason, /itself a VM/)
    assert.equal(accelChoice('auto', { kvm: true, hypervisor: false }).accel, 'kvm')
    assert.match(accelChoice('auto', { kvm: false, hypervisor: false }).reason, /\/dev\/kvm is missing/)
    assert.deepEqual(accelChoice('kvm', { kvm: false, hypervisor: true }), { accel: 'kvm', reason: '--accel kvm asked for it' })
  })

  it('names the cgroup layout and the controllers that are missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'doctor-cgroup-'))
    try {
      await writeFile(join(dir, 'cgroup.controllers'), 'cpuset cpu io memory\n')
      const v2 = checkCgroups(dir)
      assert.equal(v2.status, 'fail')
      assert.match(v2.detail, /^v2 without pids/)
      await rm(join(dir, 'cgroup.controllers'))
      for (const c of ['memory', 'cpu', 'pids', 'freezer', 'unified']) await mkdir(join(dir, c))
      const v1 = checkCgroups(dir)
      assert.equal(v1.status, 'ok')
      assert.match(v1.detail, /^v1 \(hybrid/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('fails when no template is built, and says how to build one', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'doctor-data-'))
    try {
      const report = await runDoctor({ dataDir })
      const templates = report.checks.find((c) => c.name === 'templates')
      assert.equal(templates?.status, 'fail')
      assert.match(templates.detail, /sandstorm template build debian/)
      assert.equal(report.ok, false)
      assert.ok(report.checks.some((c) => c.name === 'storage'))
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it('passes the templates check once one has a current version', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'doctor-data-'))
    try {
      await mkdir(join(dataDir, 'templates', 'debian', 'current'), { recursive: true })
      await writeFile(join(dataDir, 'templates', 'debian', 'current', 'template.json'), '{}')
      const report = await runDoctor({ dataDir })
      assert.equal(report.checks.find((c) => c.name === 'templates')?.status, 'ok')
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
