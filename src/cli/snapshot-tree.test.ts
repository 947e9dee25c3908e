import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { SnapshotInfo } from '@sandstorm/sdk'
import { snapshotTreeLines } from './snapshot-tree.js'

const snap = (id: string, parentId: string | null, label = ''): SnapshotInfo => ({
  id, parentId, label, sandboxId: 'sb-x', template: 'debian', driver: 'overlay', depth: 1, memoryMiB: 256, cpus: 1, pidsMax: 1024, diskMiB: 2048, cwd: '/', createdAt: '',
})

test('draws children under their parents, and orphans as roots', () => {
  const lines = snapshotTreeLines([snap('a', null, 'root'), snap('b', 'a'), snap('c', 'b'), snap('d', 'a'), snap('e', 'gone')])
  assert.deepEqual(lines, [
    'a "root" (debian, from sb-x)',
    '├── b (debian, from sb-x)',
    '│   └── c (debian, from sb-x)',
    '└── d (debian, from sb-x)',
    'e (debian, from sb-x)',
  ])
})
