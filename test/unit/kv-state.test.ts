import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command } from '../../src/kv/command.js';
import { CorruptDataError, PreconditionFailedError } from '../../src/kv/errors.js';
import type { KeyMeta } from '../../src/kv/kv-record.js';
import { planApply, runApply, type ApplyResult, type CommittedEntry, type KvCounters } from '../../src/kv/kv-state.js';
import type { Ready } from '../../src/raft/ready.js';
import type { Entry } from '../../src/raft/types.js';
import { LevelStorage } from '../../src/storage/level-storage.js';
import { AssertionError } from '../../src/util/assert.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const put = (key: string, value: string, extra: Partial<Command> = {}): Command =>
  ({ op: 'put', requestId: `put ${key}=${value}`, key, value: bytes(value), ...extra }) as Command;
const del = (key: string, extra: Partial<Command> = {}): Command =>
  ({ op: 'delete', requestId: `del ${key}`, key, ...extra }) as Command;

/**
 * The state machine over an in-memory "disk": a Map standing in for the kv sublevel, written only
 * with a batch's final writes, exactly as LevelStorage does.
 */
class MemoryKv {
  readonly stored = new Map<string, KeyMeta & { value: Uint8Array }>();
  counters: KvCounters = { appliedIndex: 0, revision: 0 };

  apply(items: readonly (Command | CommittedEntry | null)[]): ApplyResult[] {
    const entries = items.map((item, i) => toEntry(item, this.counters.appliedIndex + 1 + i));
    const plan = planApply(entries, this.counters.appliedIndex);
    const outcome = runApply(plan, plan.keys.map((k) => this.stored.get(k) ?? null), this.counters);
    for (const [key, write] of outcome.writes) {
      if (write === null) this.stored.delete(key);
      else this.stored.set(key, { ...write.meta, value: write.value });
    }
    this.counters = { appliedIndex: outcome.appliedIndex, revision: outcome.revision };
    return [...outcome.results];
  }
}

/** null is the leader's no-op; a Command becomes a normal entry. */
function toEntry(item: Command | CommittedEntry | null, index: number): Entry {
  if (item === null) return { index, term: 1, type: 'normal', data: new Uint8Array(0) };
  if ('op' in item) return { index, term: 1, type: 'normal', data: encodeCommand(item) };
  return { ...item, index, term: 1 };
}

function meta(kv: MemoryKv, key: string): Omit<KeyMeta, 'lease'> | undefined {
  const record = kv.stored.get(key);
  return record && { createRevision: record.createRevision, modRevision: record.modRevision, version: record.version };
}

describe('revisions and per-key metadata', () => {
  test('put, put, delete, put: revision counts changes; version and createRevision reset on delete', () => {
    const kv = new MemoryKv();
    expect(kv.apply([put('a', '1')])).toEqual([
      { kind: 'put', index: 1, requestId: 'put a=1', key: 'a', revision: 1, modRevision: 1, createRevision: 1, version: 1 },
    ]);
    expect(kv.apply([put('b', 'x')])[0]).toMatchObject({ revision: 2, createRevision: 2, version: 1 });
    expect(kv.apply([put('a', '2')])[0]).toMatchObject({ revision: 3, modRevision: 3, createRevision: 1, version: 2 });
    expect(kv.apply([del('a')])).toEqual([{ kind: 'delete', index: 4, requestId: 'del a', key: 'a', deleted: 1, revision: 4 }]);
    expect(meta(kv, 'a')).toBeUndefined();
    expect(kv.apply([put('a', '3')])[0]).toMatchObject({ revision: 5, modRevision: 5, createRevision: 5, version: 1 });
    expect(meta(kv, 'b')).toEqual({ createRevision: 2, modRevision: 2, version: 1 });
    expect(kv.counters).toEqual({ appliedIndex: 5, revision: 5 });
  });

  test('deleting an absent key changes nothing', () => {
    const kv = new MemoryKv();
    kv.apply([put('a', '1')]);
    expect(kv.apply([del('nope')])).toEqual([{ kind: 'delete', index: 2, requestId: 'del nope', key: 'nope', deleted: 0, revision: 1 }]);
    expect(kv.counters).toEqual({ appliedIndex: 2, revision: 1 });
  });

  test('a put records its lease; a put without one detaches the key', () => {
    const kv = new MemoryKv();
    kv.apply([put('a', '1', { lease: 77 })]);
    expect(kv.stored.get('a')?.lease).toBe(77);
    kv.apply([put('a', '2')]);
    expect(kv.stored.get('a')?.lease).toBe(0);
  });
});

describe('preconditions', () => {
  test('If-Match on the current modRevision applies', () => {
    const kv = new MemoryKv();
    kv.apply([put('a/b', '1'), put('other', 'x')]);
    expect(kv.apply([put('a/b', '2', { ifMatch: 1 })])[0]).toMatchObject({ kind: 'put', revision: 3, version: 2 });
    expect(kv.apply([del('a/b', { ifMatch: 3 })])[0]).toMatchObject({ kind: 'delete', deleted: 1, revision: 4 });
  });

  test('If-Match on another modRevision fails without a revision bump or a write', () => {
    const kv = new MemoryKv();
    kv.apply([put('a/b', '1'), put('a/b', '2')]);
    const [result] = kv.apply([put('a/b', '3', { ifMatch: 1, requestId: 'r9' })]);
    expect(result.kind).toBe('error');
    if (result.kind !== 'error') return;
    expect(result.requestId).toBe('r9');
    expect(result.error).toBeInstanceOf(PreconditionFailedError);
    expect(result.error.code).toBe('PRECONDITION_FAILED');
    expect(result.error.message).toBe('Cannot write "a/b": modRevision is 2, If-Match wanted 1');
    expect(result.error.modRevision).toBe(2);
    expect(kv.counters).toEqual({ appliedIndex: 3, revision: 2 });
    expect(Buffer.from(kv.stored.get('a/b')?.value ?? []).toString()).toBe('2');
  });

  test('If-Match on an absent key fails, for put and delete', () => {
    const kv = new MemoryKv();
    const results = kv.apply([put('k', 'v', { ifMatch: 1 }), del('k', { ifMatch: 1 })]);
    expect(results.map((r) => r.kind)).toEqual(['error', 'error']);
    expect(results[1].kind === 'error' && results[1].error.message).toBe('Cannot delete "k": it does not exist, If-Match wanted 1');
    expect(kv.counters.revision).toBe(0);
    expect(kv.stored.size).toBe(0);
  });

  test('If-None-Match applies only while the key is absent', () => {
    const kv = new MemoryKv();
    expect(kv.apply([put('lock', 'me', { ifNoneMatch: true })])[0]).toMatchObject({ kind: 'put', revision: 1 });
    const [second] = kv.apply([put('lock', 'you', { ifNoneMatch: true })]);
    expect(second.kind === 'error' && second.error.message).toBe(
      'Cannot write "lock": it exists with modRevision 1, If-None-Match wanted none',
    );
    expect(kv.counters.revision).toBe(1);
    expect(Buffer.from(kv.stored.get('lock')?.value ?? []).toString()).toBe('me');
  });
});

describe('one batch', () => {
  test('later commands see earlier ones on the same key', () => {
    const kv = new MemoryKv();
    const results = kv.apply([
      put('a', '1'),
      put('a', '2', { ifMatch: 1 }), // sees the put just before it
      put('a', '3', { ifMatch: 1 }), // stale now: fails
      put('a', '4', { ifNoneMatch: true }), // a exists within the batch: fails
    ]);
    expect(results.map((r) => r.kind)).toEqual(['put', 'put', 'error', 'error']);
    expect(results[1]).toMatchObject({ revision: 2, modRevision: 2, createRevision: 1, version: 2 });
    expect(meta(kv, 'a')).toEqual({ createRevision: 1, modRevision: 2, version: 2 });
    expect(Buffer.from(kv.stored.get('a')?.value ?? []).toString()).toBe('2');
  });

  test('only the final state of a key is written', () => {
    const commands = [put('a', '1'), del('a'), put('a', '2'), put('b', '1'), del('b')];
    const plan = planApply(commands.map((c, i) => toEntry(c, i + 1)), 0);
    const outcome = runApply(plan, [null, null], { appliedIndex: 0, revision: 10 });
    expect([...outcome.writes.keys()]).toEqual(['a', 'b']);
    expect(outcome.writes.get('a')?.meta).toEqual({ createRevision: 13, modRevision: 13, version: 1, lease: 0 });
    expect(outcome.writes.get('b')).toBeNull();
    expect(outcome.revision).toBe(15);
  });

  test('no-ops and config entries are skipped but applied', () => {
    const kv = new MemoryKv();
    const config: CommittedEntry = { index: 0, type: 'config', data: bytes('{"voters":["n1"]}') };
    const results = kv.apply([null, put('a', '1'), config]);
    expect(results).toEqual([
      { kind: 'none', index: 1, requestId: '' },
      expect.objectContaining({ kind: 'put', index: 2, revision: 1 }),
      { kind: 'none', index: 3, requestId: '' },
    ]);
    expect(kv.counters).toEqual({ appliedIndex: 3, revision: 1 });
  });

  test('entries must directly follow the applied index', () => {
    expect(() => planApply([toEntry(put('a', '1'), 3)], 1)).toThrow(AssertionError);
  });

  test('a committed entry that is not a command stops the batch with CorruptDataError', () => {
    const garbage: Entry = { index: 2, term: 1, type: 'normal', data: Uint8Array.of(1, 99, 0) };
    expect(() => planApply([toEntry(put('a', '1'), 1), garbage], 0)).toThrow(CorruptDataError);
  });
});

describe('the state machine on LevelDB', () => {
  let dir: string;
  let storage: LevelStorage;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flotilla-kv-state-'));
    storage = await LevelStorage.open(dir);
    await storage.bootstrap({ voters: ['n1'], learners: [] });
  });

  afterEach(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Appends and commits commands in one Ready, as a single-member leader would. */
  async function commit(commands: Command[]): Promise<ApplyResult[]> {
    const first = storage.appliedIndex + 1;
    const entries = commands.map((c, i) => toEntry(c, first + i));
    const last = first + entries.length - 1;
    const ready: Ready = {
      softState: null,
      hardState: { term: 1, vote: 'n1', commit: last },
      entries,
      snapshot: null,
      messages: [],
      committed: entries,
      readStates: [],
      mustSync: true,
    };
    return storage.persist(ready);
  }

  test('metadata carries across batches through the stored records', async () => {
    await commit([put('a', '1')]);
    await commit([put('a', '2'), put('b', '1')]);
    expect(await storage.get('a')).toMatchObject({ createRevision: 1, modRevision: 2, version: 2 });
    const [fail, ok] = await commit([del('a', { ifMatch: 1 }), del('a', { ifMatch: 2 })]);
    expect(fail.kind).toBe('error');
    expect(ok).toMatchObject({ kind: 'delete', deleted: 1, revision: 4 });
    expect(await storage.get('a')).toBeNull();
    expect(await commit([put('a', '3')])).toEqual([expect.objectContaining({ revision: 5, createRevision: 5, version: 1 })]);
    expect(storage.revision).toBe(5);
    expect(storage.appliedIndex).toBe(6);
  });
});
