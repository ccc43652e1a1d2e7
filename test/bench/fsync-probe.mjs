#!/usr/bin/env node
// How long does a durable write take on this disk, in the shapes that matter to flotilla and etcd?
//   1. append 4 KiB to a growing file + fdatasync (what LevelDB's log does: the size changes, so
//      the inode must be journaled too);
//   2. overwrite 4 KiB inside a preallocated, already written file + fdatasync (what etcd's WAL
//      does: 64 MB segments preallocated, so only data blocks are flushed);
//   3. a classic-level batch of 30 small puts with { sync: true } (flotilla's persist before the
//      write-ahead log, minus Raft);
//   4. with --concurrency=N (default 3, as in a local 3-member cluster): N processes at once, each
//      doing 300-byte durable writes through the thread pool, appending + fdatasync against
//      overwriting a zero-filled file opened with O_DSYNC (what src/storage/wal.ts does).
//
//   node test/bench/fsync-probe.mjs [--count=300] [--dir=/tmp] [--concurrency=3]
import { execFileSync } from 'node:child_process';
import { closeSync, constants, fdatasyncSync, mkdtempSync, openSync, promises as fsp, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const count = Number(args.count ?? 300);

// A child of the concurrent probe: durable writes of one shape, printing its p50.
if (args.child) {
  const block = Buffer.alloc(300, 7);
  const file = join(args.dir, `${args.child}-${process.pid}.log`);
  let fh;
  if (args.child === 'append') fh = await fsp.open(file, 'w');
  else {
    const zeros = await fsp.open(file, 'w');
    await zeros.write(Buffer.alloc(count * 512), 0, count * 512, 0);
    await zeros.datasync();
    await zeros.close();
    fh = await fsp.open(file, constants.O_WRONLY | constants.O_DSYNC);
  }
  const t = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    if (args.child === 'append') {
      await fh.write(block);
      await fh.datasync();
    } else await fh.write(block, 0, block.length, i * 512);
    t.push(performance.now() - t0);
  }
  await fh.close();
  t.sort((a, b) => a - b);
  console.log(t[t.length >> 1].toFixed(3));
  process.exit(0);
}

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
  const concurrency = Number(args.concurrency ?? 3);
  for (const shape of ['append', 'prealloc']) {
    // One shell line starts them together; each prints its p50.
    const script = Array.from({ length: concurrency }, () => `${JSON.stringify(process.execPath)} ${JSON.stringify(import.meta.filename)} --child=${shape} --dir=${JSON.stringify(dir)} --count=${count} &`).join(' ') + ' wait';
    const p50s = execFileSync('bash', ['-c', script]).toString().trim().split('\n');
    const label = shape === 'append' ? 'append 300 B + fdatasync' : 'O_DSYNC overwrite of 300 B, zero-filled file';
    console.log(`${concurrency} processes at once, ${label}: p50 ${p50s.join(' / ')} ms`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
