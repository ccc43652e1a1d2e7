import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command, type Compare, type TxnCommand, type TxnOp, type TxnPut } from '../../src/kv/command.js';
import {
  CorruptDataError,
  LeaseExistsError,
  LeaseNotFoundError,
  PreconditionFailedError,
  TooManyLeasesError,
} from '../../src/kv/errors.js';
import type { KeyMeta } from '../../src/kv/kv-record.js';
import {
  MAX_LEASES,
  planApply,
  runApply,
  type ApplyResult,
  type FailedResult,
  type CommittedEntry,
  type KeyWrite,
  type KvCounters,
  type LeaseRecord,
  type RevisionEvents,
} from '../../src/kv/kv-state.js';
import type { Ready } from '../../src/raft/ready.js';
import type { Entry } from '../../src/raft/types.js';
import { LevelStorage } from '../../src/storage/level-storage.js';
import { AssertionError } from '../../src/util/assert.js';
import { SeededRng } from '../../src/util/rng.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const put = (key: string, value: string, extra: Partial<Command> = {}): Command =>
  ({ op: 'put', requestId: `put ${key}=${value}`, key, value: bytes(value), ...extra }) as Command;
const put1 = (key: string, value: string): TxnPut => ({ op: 'put', key, value: bytes(value) });
const del = (key: string, extra: Partial<Command> = {}): Command =>
  ({ op: 'delete', requestId: `del ${key}`, key, ...extra }) as Command;

/**
 * The state machine over an in-memory "disk": Maps standing in for the kv, leases and lease-keys
 * sublevels and the history, written only with a batch's outcome, exactly as LevelStorage does.
 * After each batch it checks that the lease index matches the keys' lease fields.
 */
class MemoryKv {
  readonly stored = new Map<string, KeyMeta & { value: Uint8Array }>();
  readonly leases = new Map<number, LeaseRecord>();
  /** lease id -> attached keys: the lease-keys sublevel. */
  readonly leaseIndex = new Map<number, Set<string>>();
  readonly history: RevisionEvents[] = [];
  counters: KvCounters = { appliedIndex: 0, revision: 0 };

  apply(items: readonly (Command | CommittedEntry | null)[]): ApplyResult[] {
    const entries = items.map((item, i) => toEntry(item, this.counters.appliedIndex + 1 + i));
    const plan = planApply(entries, this.counters.appliedIndex);
    const leaseKeys = new Map(plan.revokedLeases.map((id) => [id, [...(this.leaseIndex.get(id) ?? [])].sort()]));
    const keys = new Map<string, KeyWrite | null>();
    for (const key of [...plan.keys, ...[...leaseKeys.values()].flat()]) keys.set(key, this.#record(key));
    const leases = new Map(plan.leases.map((id) => [id, this.leases.get(id) ?? null]));
    const outcome = runApply(plan, { keys, leases, leaseKeys, leaseCount: this.leases.size }, this.counters);
    for (const [key, write] of outcome.writes) {
      if (write === null) this.stored.delete(key);
      else this.stored.set(key, { ...write.meta, value: write.value });
    }
    for (const [id, lease] of outcome.leaseWrites) {
      if (lease === null) this.leases.delete(id);
      else this.leases.set(id, lease);
    }
    for (const { lease, key, attach } of outcome.leaseKeyChanges) {
      const attached = this.leaseIndex.get(lease) ?? new Set<string>();
      this.leaseIndex.set(lease, attached);
      expect(attached.has(key), `lease index (${lease}, ${key}) before ${attach ? 'attach' : 'detach'}`).toBe(!attach);
      if (attach) attached.add(key);
      else attached.delete(key);
    }
    this.history.push(...outcome.history);
    this.counters = { appliedIndex: outcome.appliedIndex, revision: outcome.revision };
    expect(outcome.leaseCount).toBe(this.leases.size);
    this.#checkLeaseIndex();
    return [...outcome.results];
  }

  #record(key: string): KeyWrite | null {
    const stored = this.stored.get(key);
    if (stored === undefined) return null;
    const { value, ...meta } = stored;
    return { meta, value };
  }

  /** The lease index holds exactly the keys whose lease field is set, and only live leases have keys. */
  #checkLeaseIndex(): void {
    const fromKeys = new Map<number, string[]>();
    for (const [key, record] of this.stored) {
      if (record.lease === 0) continue;
      expect(this.leases.has(record.lease), `key ${key} is attached to missing lease ${record.lease}`).toBe(true);
      fromKeys.set(record.lease, [...(fromKeys.get(record.lease) ?? []), key].sort());
    }
    const fromIndex = new Map([...this.leaseIndex].filter(([, keys]) => keys.size > 0).map(([id, keys]) => [id, [...keys].sort()]));
    expect(fromIndex).toEqual(fromKeys);
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
      {
        kind: 'put',
        index: 1,
        requestId: 'put a=1',
        key: 'a',
        revision: 1,
        modRevision: 1,
        createRevision: 1,
        version: 1,
        events: [{ type: 'put', key: 'a', value: Buffer.from('1'), modRevision: 1, createRevision: 1, version: 1, lease: 0 }],
      },
    ]);
    expect(kv.apply([put('b', 'x')])[0]).toMatchObject({ revision: 2, createRevision: 2, version: 1 });
    expect(kv.apply([put('a', '2')])[0]).toMatchObject({ revision: 3, modRevision: 3, createRevision: 1, version: 2 });
    expect(kv.apply([del('a')])).toEqual([
      {
        kind: 'delete',
        index: 4,
        requestId: 'del a',
        key: 'a',
        deleted: 1,
        revision: 4,
        events: [{ type: 'delete', key: 'a', value: new Uint8Array(0), modRevision: 4, createRevision: 0, version: 0, lease: 0 }],
      },
    ]);
    expect(meta(kv, 'a')).toBeUndefined();
    expect(kv.apply([put('a', '3')])[0]).toMatchObject({ revision: 5, modRevision: 5, createRevision: 5, version: 1 });
    expect(meta(kv, 'b')).toEqual({ createRevision: 2, modRevision: 2, version: 1 });
    expect(kv.counters).toEqual({ appliedIndex: 5, revision: 5 });
  });

  test('deleting an absent key changes nothing', () => {
    const kv = new MemoryKv();
    kv.apply([put('a', '1')]);
    expect(kv.apply([del('nope')])).toEqual([
      { kind: 'delete', index: 2, requestId: 'del nope', key: 'nope', deleted: 0, revision: 1, events: [] },
    ]);
    expect(kv.counters).toEqual({ appliedIndex: 2, revision: 1 });
  });

  test('a put records its lease; a put without one detaches the key', () => {
    const kv = new MemoryKv();
    kv.apply([{ op: 'leaseGrant', requestId: '', id: 77, ttlSeconds: 5 }, put('a', '1', { lease: 77 })]);
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
    expect(result.error).toMatchObject({ modRevision: 2 });
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
    const stored = { keys: new Map([['a', null], ['b', null]]), leases: new Map(), leaseKeys: new Map(), leaseCount: 0 };
    const outcome = runApply(plan, stored, { appliedIndex: 0, revision: 10 });
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

const grant = (id: number, ttlSeconds = 10): Command => ({ op: 'leaseGrant', requestId: `grant ${id}`, id, ttlSeconds });
const revoke = (id: number, reason: 'revoke' | 'expire' = 'revoke'): Command => ({ op: 'leaseRevoke', requestId: `revoke ${id}`, id, reason });
const txn = (parts: Partial<TxnCommand>): TxnCommand => ({ op: 'txn', requestId: 'txn', compare: [], success: [], failure: [], ...parts });
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString());

function only<K extends ApplyResult['kind']>(results: ApplyResult[], kind: K): Extract<ApplyResult, { kind: K }> {
  expect(results).toHaveLength(1);
  expect(results[0].kind, JSON.stringify(results[0])).toBe(kind);
  return results[0] as Extract<ApplyResult, { kind: K }>;
}

describe('txn', () => {
  /** "other" at revision 1; "k" = "m" created at 2, modified at 3, version 2. */
  function fixture(): MemoryKv {
    const kv = new MemoryKv();
    kv.apply([put('other', 'x'), put('k', 'm'), put('k', 'm')]);
    return kv;
  }

  const v = (s: string): Uint8Array => bytes(s);
  test.each([
    ['k', 'value', '=', v('m'), true],
    ['k', 'value', '=', v('n'), false],
    ['k', 'value', '!=', v('n'), true],
    ['k', 'value', '!=', v('m'), false],
    ['k', 'value', '<', v('n'), true],
    ['k', 'value', '<', v('mm'), true], // a proper prefix sorts first
    ['k', 'value', '<', Uint8Array.of(0xff), true], // bytes are unsigned
    ['k', 'value', '<', v('m'), false],
    ['k', 'value', '>', v('l'), true],
    ['k', 'value', '>', v('mm'), false],
    ['k', 'value', '>', v(''), true],
    ['k', 'modRevision', '=', 3, true],
    ['k', 'modRevision', '!=', 3, false],
    ['k', 'modRevision', '<', 4, true],
    ['k', 'modRevision', '<', 3, false],
    ['k', 'modRevision', '>', 2, true],
    ['k', 'modRevision', '>', 3, false],
    ['k', 'createRevision', '=', 2, true],
    ['k', 'createRevision', '!=', 3, true],
    ['k', 'createRevision', '<', 2, false],
    ['k', 'createRevision', '>', 1, true],
    ['k', 'version', '=', 2, true],
    ['k', 'version', '!=', 2, false],
    ['k', 'version', '<', 3, true],
    ['k', 'version', '>', 2, false],
    // An absent key: revisions and version are 0; its value compares false except '!='.
    ['nope', 'value', '=', v(''), false],
    ['nope', 'value', '<', v('x'), false],
    ['nope', 'value', '>', v(''), false],
    ['nope', 'value', '!=', v(''), true],
    ['nope', 'value', '!=', v('x'), true],
    ['nope', 'modRevision', '=', 0, true],
    ['nope', 'modRevision', '!=', 0, false],
    ['nope', 'createRevision', '<', 1, true],
    ['nope', 'createRevision', '>', 0, false],
    ['nope', 'version', '=', 0, true],
    ['nope', 'version', '>', 0, false],
  ] as [string, Compare['target'], Compare['op'], Uint8Array | number, boolean][])(
    '%s %s %s %o is %s',
    (key, target, op, value, holds) => {
      const kv = fixture();
      const result = only(kv.apply([txn({ compare: [{ key, target, op, value }] })]), 'txn');
      expect(result.succeeded).toBe(holds);
    },
  );

  test('every compare must hold for the success branch; otherwise the failure branch runs', () => {
    const kv = fixture();
    const branches = { success: [put1('s', 'yes')], failure: [put1('f', 'no')] };
    const holds: Compare = { key: 'k', target: 'version', op: '=', value: 2 };
    const fails: Compare = { key: 'other', target: 'value', op: '=', value: bytes('y') };
    const ok = only(kv.apply([txn({ compare: [holds, holds], ...branches })]), 'txn');
    expect(ok).toMatchObject({ succeeded: true, revision: 4, results: [{ op: 'put', key: 's', modRevision: 4 }] });
    const failed = only(kv.apply([txn({ compare: [holds, fails], ...branches })]), 'txn');
    expect(failed).toMatchObject({ succeeded: false, revision: 5, results: [{ op: 'put', key: 'f', modRevision: 5 }] });
    expect([...kv.stored.keys()].sort()).toEqual(['f', 'k', 'other', 's']);
  });

  test('all writes of a txn share one new revision and one history record', () => {
    const kv = fixture();
    const result = only(
      kv.apply([txn({ success: [put1('k', 'n'), put1('new', '1'), { op: 'delete', key: 'other' }, { op: 'delete', key: 'absent' }] })]),
      'txn',
    );
    expect(result).toEqual({
      kind: 'txn',
      index: 4,
      requestId: 'txn',
      succeeded: true,
      revision: 4,
      results: [
        { op: 'put', key: 'k', modRevision: 4, createRevision: 2, version: 3 },
        { op: 'put', key: 'new', modRevision: 4, createRevision: 4, version: 1 },
        { op: 'delete', key: 'other', deleted: 1 },
        { op: 'delete', key: 'absent', deleted: 0 },
      ],
      events: [
        expect.objectContaining({ type: 'put', key: 'k', modRevision: 4, createRevision: 2, version: 3 }),
        expect.objectContaining({ type: 'put', key: 'new', modRevision: 4, createRevision: 4, version: 1 }),
        { type: 'delete', key: 'other', value: new Uint8Array(0), modRevision: 4, createRevision: 0, version: 0, lease: 0 },
      ],
    });
    expect(kv.counters.revision).toBe(4);
    expect(kv.history.at(-1)).toEqual({ revision: 4, events: result.events });
    expect(meta(kv, 'k')).toEqual({ createRevision: 2, modRevision: 4, version: 3 });
  });

  test('a txn that only reads, or deletes absent keys, leaves the revision alone', () => {
    const kv = fixture();
    const result = only(kv.apply([txn({ success: [{ op: 'get', key: 'k' }, { op: 'delete', key: 'absent' }] })]), 'txn');
    expect(result).toMatchObject({ succeeded: true, revision: 3, events: [] });
    expect(only(kv.apply([txn({})]), 'txn')).toMatchObject({ succeeded: true, revision: 3, results: [], events: [] });
    expect(kv.history.map((h) => h.revision)).toEqual([1, 2, 3]);
    // And the next write takes the next revision: nothing was skipped.
    expect(only(kv.apply([put('k', 'z')]), 'put').revision).toBe(4);
  });

  test('get sees the branch so far: values and metadata after earlier puts and deletes', () => {
    const kv = fixture();
    const result = only(
      kv.apply([
        txn({
          success: [
            { op: 'get', key: 'k' },
            put1('k', 'new'),
            { op: 'get', key: 'k' },
            { op: 'delete', key: 'other' },
            { op: 'get', key: 'other' },
            { op: 'get', key: 'never' },
          ],
        }),
      ]),
      'txn',
    );
    const items = result.results.filter((r) => r.op === 'get').map((r) => r.item);
    expect(items.map((i) => i && { key: i.key, value: text(i.value), mod: i.modRevision, version: i.version })).toEqual([
      { key: 'k', value: 'm', mod: 3, version: 2 },
      { key: 'k', value: 'new', mod: 4, version: 3 },
      null,
      null,
    ]);
    expect(items[1]).toMatchObject({ createRevision: 2, lease: 0 });
  });

  test('compares see the state before the txn, including earlier entries of the same batch', () => {
    const kv = new MemoryKv();
    const [, second] = kv.apply([
      put('a', '1'),
      txn({ compare: [{ key: 'a', target: 'version', op: '=', value: 1 }], success: [put1('a', '2')], failure: [put1('lost', 'x')] }),
    ]);
    expect(second).toMatchObject({ kind: 'txn', succeeded: true, revision: 2 });
    expect(text(kv.stored.get('a')?.value)).toBe('2');
  });

  test('all or nothing: a put with a missing lease fails the whole txn, earlier ops included', () => {
    const kv = fixture();
    kv.apply([grant(7)]);
    const ops: TxnOp[] = [put1('k', 'changed'), { op: 'delete', key: 'other' }, { ...put1('b', 'x'), lease: 7 }, { ...put1('c', 'y'), lease: 8 }];
    const result = only(kv.apply([txn({ requestId: 'tx1', success: ops })]), 'error');
    expect(result.requestId).toBe('tx1');
    expect(result.error).toBeInstanceOf(LeaseNotFoundError);
    expect(result.error).toMatchObject({ code: 'LEASE_NOT_FOUND', id: 8, message: 'Cannot write "c": lease 8 not found' });
    expect(kv.counters.revision).toBe(3);
    expect(text(kv.stored.get('k')?.value)).toBe('m');
    expect(kv.stored.has('other')).toBe(true);
    expect(kv.stored.has('b')).toBe(false);
    expect(kv.history).toHaveLength(3);
    // The failure branch is held to the same rule.
    const failing = txn({ compare: [{ key: 'k', target: 'version', op: '=', value: 99 }], failure: [{ ...put1('d', 'z'), lease: 9 }] });
    expect(only(kv.apply([failing]), 'error').error).toMatchObject({ id: 9 });
    // A branch that is not chosen is not checked.
    const unchosen = txn({ success: [put1('d', 'z')], failure: [{ ...put1('d', 'z'), lease: 9 }] });
    expect(only(kv.apply([unchosen]), 'txn').revision).toBe(4);
  });

  test('a txn put attaches its key to a lease', () => {
    const kv = new MemoryKv();
    kv.apply([grant(3), txn({ success: [{ ...put1('a', '1'), lease: 3 }, put1('b', '2')] })]);
    expect(kv.stored.get('a')?.lease).toBe(3);
    expect(kv.stored.get('b')?.lease).toBe(0);
    expect(only(kv.apply([revoke(3)]), 'leaseRevoke').deletedKeys).toBe(1);
  });
});

describe('leases', () => {
  test('grant, then revoke deletes every attached key at one revision, in byte order', () => {
    const kv = new MemoryKv();
    expect(only(kv.apply([grant(1, 30)]), 'leaseGrant')).toEqual({ kind: 'leaseGrant', index: 1, requestId: 'grant 1', id: 1, ttlSeconds: 30 });
    expect(kv.counters.revision).toBe(0); // a grant changes no key
    kv.apply([grant(2), put('😀', 'a', { lease: 1 }), put('\uFFFF', 'b', { lease: 1 }), put('a', 'c', { lease: 1 }), put('keep', 'd', { lease: 2 }), put('plain', 'e')]);
    expect(kv.counters.revision).toBe(5);
    const result = only(kv.apply([revoke(1, 'expire')]), 'leaseRevoke');
    expect(result).toMatchObject({ kind: 'leaseRevoke', id: 1, reason: 'expire', deletedKeys: 3, revision: 6 });
    // U+FFFF (EF BF BF) sorts before U+1F600 (F0 9F 98 80) in UTF-8, unlike in JS string order.
    expect(result.events.map((e) => [e.type, e.key, e.modRevision])).toEqual([
      ['delete', 'a', 6],
      ['delete', '\uFFFF', 6],
      ['delete', '😀', 6],
    ]);
    expect(kv.history.at(-1)).toEqual({ revision: 6, events: result.events });
    expect([...kv.stored.keys()].sort()).toEqual(['keep', 'plain']);
    expect([...kv.leases.keys()]).toEqual([2]);
  });

  test('revoking a lease without keys deletes it without a new revision', () => {
    const kv = new MemoryKv();
    kv.apply([put('x', '1'), grant(4)]);
    expect(only(kv.apply([revoke(4)]), 'leaseRevoke')).toEqual({
      kind: 'leaseRevoke', index: 3, requestId: 'revoke 4', id: 4, reason: 'revoke', deletedKeys: 0, revision: 1, events: [],
    });
    expect(kv.leases.size).toBe(0);
    expect(kv.history).toHaveLength(1);
  });

  test('revoking an unknown (or already revoked) lease fails with LEASE_NOT_FOUND', () => {
    const kv = new MemoryKv();
    const result = only(kv.apply([revoke(9)]), 'error');
    expect(result.error).toBeInstanceOf(LeaseNotFoundError);
    expect(result.error).toMatchObject({ code: 'LEASE_NOT_FOUND', id: 9 });
    const [, , again] = kv.apply([grant(9), revoke(9), revoke(9)]);
    expect(again).toMatchObject({ kind: 'error', error: { code: 'LEASE_NOT_FOUND' } });
  });

  test('granting an id that exists fails; a revoked id may be granted again', () => {
    const kv = new MemoryKv();
    kv.apply([grant(5, 10)]);
    const result = only(kv.apply([grant(5, 20)]), 'error');
    expect(result.error).toBeInstanceOf(LeaseExistsError);
    expect(result.error.code).toBe('INVALID_ARGUMENT');
    expect(kv.leases.get(5)).toEqual({ ttlSeconds: 10 });
    kv.apply([revoke(5), grant(5, 20)]);
    expect(kv.leases.get(5)).toEqual({ ttlSeconds: 20 });
  });

  test(`a grant beyond MAX_LEASES (${MAX_LEASES}) fails with OVERLOADED`, () => {
    const plan = planApply([toEntry(grant(1), 1), toEntry(revoke(2), 2), toEntry(grant(1), 3)], 0);
    const stored = { keys: new Map(), leases: new Map([[1, null], [2, { ttlSeconds: 1 }]]), leaseKeys: new Map([[2, []]]) };
    const full = runApply(plan, { ...stored, leaseCount: MAX_LEASES }, { appliedIndex: 0, revision: 0 });
    expect(full.results[0]).toMatchObject({ kind: 'error', error: { code: 'OVERLOADED' } });
    expect((full.results[0] as FailedResult).error).toBeInstanceOf(TooManyLeasesError);
    expect(full.results[2]).toMatchObject({ kind: 'leaseGrant', id: 1 }); // the revoke made room
    expect(full.leaseCount).toBe(MAX_LEASES);
    const roomy = runApply(plan, { ...stored, leaseCount: MAX_LEASES - 1 }, { appliedIndex: 0, revision: 0 });
    expect(roomy.results.map((r) => r.kind)).toEqual(['leaseGrant', 'leaseRevoke', 'error']); // exists by then
  });

  test('a put naming a missing lease fails and changes nothing', () => {
    const kv = new MemoryKv();
    kv.apply([put('a', '1')]);
    const result = only(kv.apply([put('a', '2', { lease: 3, requestId: 'p' })]), 'error');
    expect(result).toMatchObject({ requestId: 'p', error: { code: 'LEASE_NOT_FOUND', id: 3, message: 'Cannot write "a": lease 3 not found' } });
    expect(text(kv.stored.get('a')?.value)).toBe('1');
    expect(kv.counters.revision).toBe(1);
    // ...also when the lease was revoked earlier in the same batch.
    const [, , late] = kv.apply([grant(3), revoke(3), put('a', '3', { lease: 3 })]);
    expect(late).toMatchObject({ kind: 'error', error: { code: 'LEASE_NOT_FOUND' } });
  });

  test('preconditions are checked before the lease', () => {
    const kv = new MemoryKv();
    kv.apply([put('a', '1')]);
    expect(only(kv.apply([put('a', '2', { lease: 3, ifNoneMatch: true })]), 'error').error.code).toBe('PRECONDITION_FAILED');
  });

  test('a put without a lease detaches the key: a revoke no longer deletes it', () => {
    const kv = new MemoryKv();
    kv.apply([grant(1), put('a', '1', { lease: 1 }), put('b', '1', { lease: 1 })]);
    kv.apply([put('a', '2')]);
    expect(kv.stored.get('a')?.lease).toBe(0);
    expect(only(kv.apply([revoke(1)]), 'leaseRevoke')).toMatchObject({ deletedKeys: 1, events: [expect.objectContaining({ key: 'b' })] });
    expect(text(kv.stored.get('a')?.value)).toBe('2');
  });

  test('a put with another lease moves the key; a delete detaches it', () => {
    const kv = new MemoryKv();
    kv.apply([grant(1), grant(2), put('a', '1', { lease: 1 }), put('b', '1', { lease: 1 })]);
    kv.apply([put('a', '2', { lease: 2 }), del('b'), put('b', 'again')]);
    expect(only(kv.apply([revoke(1)]), 'leaseRevoke').deletedKeys).toBe(0);
    expect(only(kv.apply([revoke(2)]), 'leaseRevoke').events.map((e) => e.key)).toEqual(['a']);
    expect(text(kv.stored.get('b')?.value)).toBe('again');
  });

  test('within one batch: keys attached and detached before the revoke count as such', () => {
    const kv = new MemoryKv();
    kv.apply([grant(5), put('stored', '1', { lease: 5 }), put('moved', '1', { lease: 5 })]);
    const results = kv.apply([put('new', '1', { lease: 5 }), put('moved', '2'), put('b', '1', { lease: 5 }), revoke(5), put('after', '1')]);
    const revoked = results[3];
    expect(revoked).toMatchObject({ kind: 'leaseRevoke', deletedKeys: 3, revision: 6 });
    expect(revoked.kind === 'leaseRevoke' && revoked.events.map((e) => e.key)).toEqual(['b', 'new', 'stored']);
    expect([...kv.stored.keys()].sort()).toEqual(['after', 'moved']);
  });

  test('a key may be attached to a lease granted in the same batch', () => {
    const kv = new MemoryKv();
    const results = kv.apply([grant(8), put('k', 'v', { lease: 8 })]);
    expect(results.map((r) => r.kind)).toEqual(['leaseGrant', 'put']);
    expect(kv.stored.get('k')?.lease).toBe(8);
  });
});

describe('batch boundaries do not matter', () => {
  /** A random mix of every command over a few keys and leases. */
  function workload(seed: number, count: number): Command[] {
    const rng = new SeededRng(seed);
    const key = (): string => ['a', 'b', 'c', 'é', '\uFFFF', '😀', 'a/x'][rng.int(0, 7)];
    const lease = (): number => rng.int(1, 4);
    const maybeLease = (): { lease?: number } => (rng.chance(0.5) ? { lease: lease() } : {});
    const op = (written: Set<string>): TxnOp => {
      const k = key();
      const kind = written.has(k) ? 'get' : (['put', 'delete', 'get'] as const)[rng.int(0, 3)];
      if (kind !== 'get') written.add(k);
      return kind === 'put' ? { op: 'put', key: k, value: bytes(`${rng.int(0, 100)}`), ...maybeLease() } : { op: kind, key: k };
    };
    const branch = (): TxnOp[] => {
      const written = new Set<string>();
      return Array.from({ length: rng.int(0, 4) }, () => op(written));
    };
    return Array.from({ length: count }, (_, i): Command => {
      const requestId = `r${i}`;
      switch (rng.int(0, 6)) {
        case 0:
          return { op: 'put', requestId, key: key(), value: bytes(`${i}`), ...maybeLease() };
        case 1:
          return { op: 'delete', requestId, key: key() };
        case 2:
          return { op: 'leaseGrant', requestId, id: lease(), ttlSeconds: 5 };
        case 3:
          return { op: 'leaseRevoke', requestId, id: lease(), reason: 'revoke' };
        default: {
          const compare: Compare[] = rng.chance(0.5)
            ? [{ key: key(), target: 'version', op: (['=', '!=', '<', '>'] as const)[rng.int(0, 4)], value: rng.int(0, 3) }]
            : [];
          return { op: 'txn', requestId, compare, success: branch(), failure: branch() };
        }
      }
    });
  }

  /** Results and state with values as text, errors as codes: comparable across runs. */
  function snapshotOf(kv: MemoryKv, results: ApplyResult[]): string {
    const replacer = (_: string, v: unknown): unknown => {
      if (v instanceof Error) return (v as { code?: string }).code;
      if (v instanceof Uint8Array || (v as { type?: string })?.type === 'Buffer') return text(Buffer.from(v as Uint8Array));
      return v;
    };
    const state = { stored: [...kv.stored].sort(), leases: [...kv.leases].sort(), history: kv.history, counters: kv.counters };
    return JSON.stringify({ results, state }, replacer);
  }

  test.each([1, 2, 3, 4, 5])('seed %i: one entry per batch and random batches agree', (seed) => {
    const commands = workload(seed, 300);
    const single = new MemoryKv();
    const singleResults = commands.flatMap((c) => single.apply([c]));
    const batched = new MemoryKv();
    const rng = new SeededRng(seed * 1000);
    const batchedResults: ApplyResult[] = [];
    for (let i = 0; i < commands.length; ) {
      const n = rng.int(1, 40);
      batchedResults.push(...batched.apply(commands.slice(i, i + n)));
      i += n;
    }
    expect(snapshotOf(batched, batchedResults)).toBe(snapshotOf(single, singleResults));
    // The workload does exercise the interesting paths.
    const kinds = new Set(singleResults.map((r) => (r.kind === 'error' ? r.error.code : r.kind)));
    expect([...kinds].sort()).toEqual(
      ['INVALID_ARGUMENT', 'LEASE_NOT_FOUND', 'delete', 'leaseGrant', 'leaseRevoke', 'put', 'txn'].sort(),
    );
    expect(singleResults.some((r) => r.kind === 'leaseRevoke' && r.deletedKeys > 0)).toBe(true);
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
