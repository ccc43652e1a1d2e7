import { describe, expect, test } from 'vitest';
import type { KvRecord } from '../../src/kv/kv-record.js';
import type { KeyWrite, LeaseRecord } from '../../src/kv/kv-state.js';
import { RecentState } from '../../src/storage/recent-state.js';

const write = (value: string, modRevision: number): KeyWrite => ({
  meta: { createRevision: 1, modRevision, version: modRevision, lease: 0 },
  value: Buffer.from(value),
});
const record = (key: string, value: string): KvRecord => ({ key, value: Buffer.from(value), createRevision: 1, modRevision: 1, version: 1, lease: 0 });
const keys = (entries: [string, KeyWrite | null][]) => new Map(entries);
const NO_LEASES = new Map<number, LeaseRecord | null>();

describe('RecentState', () => {
  test('an unlanded write is read back until its batch lands; a later batch outlives an earlier landing', () => {
    const recent = new RecentState();
    const first = recent.applied(keys([['a', write('1', 1)], ['b', write('1', 2)]]), new Map([[7, { ttlSeconds: 5 }]]));
    const second = recent.applied(keys([['a', null]]), NO_LEASES);
    expect(recent.lookup('a')).toBeNull();
    expect(recent.lookup('b')).toMatchObject({ key: 'b', modRevision: 2 });
    expect(recent.unlandedLease(7)).toEqual({ ttlSeconds: 5 });
    recent.landed(first, ['a', 'b'], [7]);
    expect(recent.lookup('a')).toBeNull(); // the second batch's delete has not landed yet
    expect(recent.lookup('b')).toBeUndefined(); // ask LevelDB
    expect(recent.unlandedLease(7)).toBeUndefined();
    recent.landed(second, ['a'], []);
    expect(recent.lookup('a')).toBeUndefined();
    expect(recent.unlanded).toBe(0);
  });

  test('the cache never holds an unlanded key, and a write drops the cached record', () => {
    const recent = new RecentState();
    recent.remember(record('a', 'old'));
    expect(recent.lookup('a')).toMatchObject({ key: 'a' });
    const batch = recent.applied(keys([['a', write('new', 2)]]), NO_LEASES);
    expect(recent.cached).toBe(0);
    recent.remember(record('a', 'old')); // a read racing the write must not be kept
    expect(Buffer.from(recent.lookup('a')!.value).toString()).toBe('new');
    recent.landed(batch, ['a'], []);
    expect(recent.lookup('a')).toBeUndefined();
  });

  test('bounded by entries, bytes and value size; the oldest goes first', () => {
    const recent = new RecentState({ entries: 3, bytes: 1000, valueBytes: 300 });
    for (const key of ['a', 'b', 'c', 'd']) recent.remember(record(key, 'x'));
    expect(recent.cached).toBe(3);
    expect(recent.lookup('a')).toBeUndefined();
    recent.remember(record('big', 'y'.repeat(301)));
    expect(recent.lookup('big')).toBeUndefined();
    recent.remember(record('e', 'z'.repeat(300))); // about 460 bytes: two small ones must go
    recent.remember(record('f', 'z'.repeat(300)));
    expect(recent.cached).toBeLessThanOrEqual(3);
    expect(recent.lookup('f')).toBeDefined();
    expect(recent.lookup('e')).toBeDefined();
    recent.clearCache();
    expect(recent.cached).toBe(0);
  });

  test('a landed write leaves its metadata for the apply path; a later write or a clear drops it', () => {
    const recent = new RecentState();
    const first = recent.applied(keys([['a', write('1', 1)], ['gone', null]]), NO_LEASES);
    expect(recent.landedMeta('a')).toBeUndefined(); // unlanded: the apply path reads the unlanded state
    recent.landed(first, ['a', 'gone'], []);
    expect(recent.landedMeta('a')).toEqual(write('1', 1).meta);
    expect(recent.landedMeta('gone')).toBeUndefined(); // a delete keeps nothing: LevelDB says absent
    const second = recent.applied(keys([['a', write('2', 2)]]), NO_LEASES);
    expect(recent.landedMeta('a')).toBeUndefined();
    recent.rememberMeta('a', write('1', 1).meta); // a read racing the write must not be kept
    expect(recent.landedMeta('a')).toBeUndefined();
    recent.landed(second, ['a'], []);
    expect(recent.landedMeta('a')).toMatchObject({ modRevision: 2, version: 2 });
    recent.clearCache();
    expect(recent.landedMeta('a')).toBeUndefined();
    recent.rememberMeta('b', write('1', 3).meta); // read from LevelDB for an apply
    expect(recent.landedMeta('b')).toMatchObject({ modRevision: 3 });
  });

  test('the kept metadata is bounded in entries; the oldest goes first', () => {
    expect(new RecentState().metaCached).toBe(0);
    const recent = new RecentState({ entries: 100, bytes: 1000, valueBytes: 300, metaEntries: 2 });
    for (const [i, key] of ['a', 'b', 'c'].entries()) recent.rememberMeta(key, write('x', i + 1).meta);
    expect(recent.metaCached).toBe(2);
    expect(recent.landedMeta('a')).toBeUndefined();
    expect(recent.landedMeta('c')).toMatchObject({ modRevision: 3 });
    const none = new RecentState({ entries: 100, bytes: 1000, valueBytes: 300, metaEntries: 0 });
    none.rememberMeta('a', write('x', 1).meta);
    expect(none.metaCached).toBe(0);
  });
});
