import { describe, expect, test } from 'vitest';
import { RaftLog } from '../../src/raft/raft-log.js';
import type { Entry, SnapshotMeta } from '../../src/raft/types.js';
import { SeededRng } from '../../src/util/rng.js';

// RaftLog keeps its entries as columns, with small data copied into append-only slabs and large
// data kept as given (see the class comment). These tests hold it to the plain-array log it
// replaced, and check that what it hands out is never changed afterwards.

const CONFIG = { voters: ['n1'], learners: [] };

function snap(index: number, term: number): SnapshotMeta {
  return { index, term, config: CONFIG };
}

/** Entries equal field by field, data byte for byte (toEqual on big arrays is far too slow here). */
function same(a: readonly Entry[], b: readonly Entry[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => x.index === b[i].index && x.term === b[i].term && x.type === b[i].type && Buffer.from(x.data).equals(b[i].data));
}

function bytes(n: number, fill: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (fill + i * 7) & 0xff;
  return b;
}

describe('RaftLog entry data', () => {
  test('small data is copied in: changing the caller\'s buffer afterwards changes nothing', () => {
    const log = new RaftLog(snap(0, 0), [], 0, 0);
    const data = bytes(100, 1);
    log.append([{ index: 1, term: 1, type: 'normal', data }]);
    data.fill(0);
    expect(log.entry(1).data).toEqual(bytes(100, 1));
    expect(log.entry(1).data).not.toBe(data);
  });

  test('data over 16 KiB is kept as given, not copied', () => {
    const log = new RaftLog(snap(0, 0), [], 0, 0);
    const big = bytes(16 * 1024 + 1, 2);
    log.append([{ index: 1, term: 1, type: 'config', data: big }]);
    expect(log.entry(1).data).toBe(big);
    expect(log.entry(1).type).toBe('config');
    expect(log.bytes()).toBe(big.byteLength);
  });

  test('a view handed out stays as it was after truncation, compaction and more appends', () => {
    const log = new RaftLog(snap(0, 0), [], 0, 0);
    log.append([1, 2, 3].map((i) => ({ index: i, term: 1, type: 'normal', data: bytes(3000, i) })));
    const third = log.entry(3).data;
    log.truncateFrom(3); // a conflicting suffix goes: its slab bytes are not written again
    log.append([{ index: 3, term: 2, type: 'normal', data: bytes(3000, 99) }]);
    log.commit = log.applied = 3;
    log.compact(snap(3, 2));
    for (let i = 4; i < 400; i++) log.append([{ index: i, term: 2, type: 'normal', data: bytes(3000, i) }]);
    expect(third).toEqual(bytes(3000, 3));
    expect(log.entry(399).data).toEqual(bytes(3000, 399));
  });

  test('seeded: columns and slabs give what a plain array of entries gives', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rng = new SeededRng(seed);
      let model: Entry[] = [];
      let boundary = snap(5, 1);
      let unstableFrom = 6;
      const log = new RaftLog(boundary, [], 5, 5);
      const handedOut: { view: Uint8Array; copy: Uint8Array }[] = [];
      let fill = 0;
      const size = (): number => {
        const r = rng.next();
        if (r < 0.6) return rng.int(0, 300);
        if (r < 0.95) return rng.int(300, 16 * 1024 + 1); // fills a 256 KiB slab in a few dozen
        return rng.int(16 * 1024 + 1, 40 * 1024); // kept by reference
      };
      const make = (index: number, term: number): Entry => ({
        index,
        term,
        type: rng.chance(0.05) ? 'config' : 'normal',
        data: bytes(size(), fill++),
      });
      const lastIndex = (): number => boundary.index + model.length;
      const lastTerm = (): number => model.at(-1)?.term ?? boundary.term;
      const ctx = (op: string): string => `seed ${seed}, after ${op}`;

      for (let step = 0; step < 300; step++) {
        const r = rng.next();
        let op: string;
        if (r < 0.55) {
          op = 'append';
          const term = lastTerm() + (rng.chance(0.1) ? 1 : 0);
          const batch = Array.from({ length: rng.int(1, 6) }, (_, i) => make(lastIndex() + 1 + i, term));
          log.append(batch);
          model.push(...batch.map((e) => ({ ...e, data: e.data.slice() })));
        } else if (r < 0.7 && model.length > 0) {
          op = 'merge with a conflict';
          const from = rng.int(Math.max(log.commit, boundary.index) + 1, lastIndex() + 1);
          const term = lastTerm() + 1;
          const batch = Array.from({ length: rng.int(1, 4) }, (_, i) => make(from + i, term));
          expect(log.merge(batch), ctx(op)).toBe(batch.at(-1)!.index);
          model = model.slice(0, from - boundary.index - 1).concat(batch.map((e) => ({ ...e, data: e.data.slice() })));
          unstableFrom = Math.min(unstableFrom, from);
        } else if (r < 0.85 && model.length > 0) {
          op = 'compact';
          const at = rng.int(boundary.index, lastIndex() + 1);
          log.commit = Math.max(log.commit, at);
          log.applied = Math.max(log.applied, at);
          const term = log.term(at)!;
          log.compact(snap(at, term));
          if (at > boundary.index) {
            model = model.slice(at - boundary.index);
            boundary = snap(at, term);
          }
        } else if (r < 0.9) {
          op = 'restore';
          boundary = snap(lastIndex() + rng.int(1, 50), lastTerm() + 1);
          log.restore(boundary);
          model = [];
          unstableFrom = boundary.index + 1;
        } else {
          op = 'stableTo';
          if (model.length > 0) {
            const at = rng.int(boundary.index + 1, lastIndex() + 1);
            log.stableTo(at, log.term(at)!);
            if (at >= unstableFrom) unstableFrom = at + 1;
          }
        }

        expect(log.firstIndex(), ctx(op)).toBe(boundary.index + 1);
        expect(log.lastIndex(), ctx(op)).toBe(lastIndex());
        expect(log.lastTerm(), ctx(op)).toBe(lastTerm());
        expect(log.bytes(), ctx(op)).toBe(model.reduce((sum, e) => sum + e.data.byteLength, 0));
        expect(log.term(boundary.index), ctx(op)).toBe(boundary.term);
        expect(same(model.map((e) => log.entry(e.index)), model), ctx(op)).toBe(true);
        expect(model.every((e) => log.term(e.index) === e.term), ctx(op)).toBe(true);
        if (model.length > 0) {
          const lo = rng.int(boundary.index + 1, lastIndex() + 1);
          const hi = rng.int(lo, lastIndex() + 2);
          expect(same(log.slice(lo, hi), model.slice(lo - boundary.index - 1, hi - boundary.index - 1)), ctx(op)).toBe(true);
          const e = model[rng.int(0, model.length)];
          if (handedOut.length < 200) handedOut.push({ view: log.entry(e.index).data, copy: e.data });
        }
        expect(same(log.unstableEntries(), model.slice(Math.max(0, unstableFrom - boundary.index - 1))), ctx(op)).toBe(true);
        expect(handedOut.every((h) => Buffer.from(h.view).equals(h.copy)), ctx(op)).toBe(true);
      }
    }
  });
});
