#!/usr/bin/env node
// How long does a durable write take on this disk, in the shapes that matter to flotilla and etcd?
//   1. append 4 KiB to a growing file + fdatasync (what LevelDB's log does: the size changes, so
//      the inode must be journaled too);
//   2. overwrite 4 KiB inside a preallocated, already written file + fdatasync (what etcd's WAL
//      does: 64 MB segments preallocated, so only data blocks are flushed);
//   3. a classic-level batch of 30 small puts with { sync: true } (flotilla's persist, minus Raft).
//
//   node test/bench/fsync-probe.mjs [--count=300] [--dir=/tmp]
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const count = Number(args.count ?? 300);
const dir = mkdtempSync(join(args.dir ?? tmpdir(), 'flotilla-fsync-'));

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return `mean ${(s.reduce((a, b) => a + b, 0) / s.length).toFixed(2)} ms, p50 ${q(0.5).toFixed(2)}, p99 ${q(0.99).toFixed(2)}`;
}

try {
  const block = Buffer.alloc(4096, 7);
  {
    const fd = openSync(join(dir, 'append.log'), 'w');
    const t = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      writeSync(fd, block);
      fdatasyncSync(fd);
      t.push(performance.now() - t0);
    }
    closeSync(fd);
    console.log(`append 4 KiB + fdatasync (growing file):        ${stats(t)}`);
  }
  {
    const fd = openSync(join(dir, 'prealloc.log'), 'w');
    const size = count * 4096;
    writeSync(fd, Buffer.alloc(size), 0, size, 0); // really written, not just reserved
    fdatasyncSync(fd);
    const t = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      writeSync(fd, block, 0, 4096, i * 4096);
      fdatasyncSync(fd);
      t.push(performance.now() - t0);
    }
    closeSync(fd);
    console.log(`overwrite 4 KiB + fdatasync (preallocated file): ${stats(t)}`);
  }
  {
    const db = new ClassicLevel(join(dir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    const value = Buffer.alloc(150, 1);
    const t = [];
    for (let i = 0; i < count; i++) {
      const ops = [];
      for (let j = 0; j < 30; j++) ops.push({ type: 'put', key: Buffer.from(`k${i}-${j}`), value });
      const t0 = performance.now();
      await db.batch(ops, { sync: true });
      t.push(performance.now() - t0);
    }
    await db.close();
    console.log(`classic-level batch of 30 puts, sync: true:      ${stats(t)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
