import { describe, expect, test } from 'vitest';
import {
  decodeCommand,
  encodeCommand,
  MAX_KEY_BYTES,
  MAX_TXN_OPS,
  MAX_VALUE_BYTES,
  type Command,
  type Compare,
  type TxnCommand,
  type TxnOp,
} from '../../src/kv/command.js';
import { CorruptDataError, InvalidArgumentError, KeyTooLargeError, ValueTooLargeError } from '../../src/kv/errors.js';
import { SeededRng } from '../../src/util/rng.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Commands with their values turned into hex, so that toStrictEqual compares bytes, not Buffer vs Uint8Array. */
function comparable(value: unknown): unknown {
  if (value instanceof Uint8Array) return `hex:${Buffer.from(value).toString('hex')}`;
  if (Array.isArray(value)) return value.map(comparable);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, comparable(v)]));
}

function txn(parts: Partial<TxnCommand>): TxnCommand {
  return { op: 'txn', requestId: 't', compare: [], success: [], failure: [], ...parts };
}

const ALL_COMPARES: Compare[] = [
  { key: 'a', target: 'value', op: '=', value: bytes('x') },
  { key: 'a', target: 'value', op: '!=', value: new Uint8Array(0) },
  { key: 'b/é', target: 'modRevision', op: '<', value: 0 },
  { key: 'c', target: 'createRevision', op: '>', value: Number.MAX_SAFE_INTEGER },
  { key: 'd', target: 'version', op: '=', value: 3 },
];

const SAMPLES: Command[] = [
  txn({}),
  txn({ requestId: '', compare: ALL_COMPARES }),
  txn({
    compare: [{ key: 'lock', target: 'createRevision', op: '=', value: 0 }],
    success: [
      { op: 'put', key: 'lock', value: bytes('me'), lease: 2 ** 40 + 1 },
      { op: 'get', key: 'lock' },
      { op: 'delete', key: 'other' },
      { op: 'get', key: 'other' },
      { op: 'put', key: 'empty', value: new Uint8Array(0) },
    ],
    failure: [{ op: 'get', key: 'lock' }, { op: 'put', key: 'lock', value: Uint8Array.of(0, 255) }],
  }),
  // The same key may be written once in each branch, and read any number of times.
  txn({ success: [{ op: 'put', key: 'k', value: bytes('1') }], failure: [{ op: 'delete', key: 'k' }, { op: 'get', key: 'k' }] }),
  { op: 'leaseGrant', requestId: 'g', id: 1, ttlSeconds: 1 },
  { op: 'leaseGrant', requestId: '', id: Number.MAX_SAFE_INTEGER, ttlSeconds: 2 ** 40 },
  { op: 'leaseRevoke', requestId: 'r', id: 7, reason: 'revoke' },
  { op: 'leaseRevoke', requestId: 'r', id: Number.MAX_SAFE_INTEGER, reason: 'expire' },
];

function decodeError(data: Uint8Array): unknown {
  try {
    decodeCommand(data);
    return null;
  } catch (err) {
    return err;
  }
}

describe('txn and lease commands round-trip', () => {
  test.each(SAMPLES.map((c, i) => [i, c.op, c] as const))('sample %i (%s)', (_, __, command) => {
    expect(comparable(decodeCommand(encodeCommand(command)))).toStrictEqual(comparable(command));
  });

  test('the largest txn: MAX_TXN_OPS compares and ops in each branch', () => {
    const ops = (prefix: string): TxnOp[] =>
      Array.from({ length: MAX_TXN_OPS }, (_, i) => ({ op: 'put', key: `${prefix}${i}`, value: bytes(`${i}`), lease: i + 1 }));
    const compare: Compare[] = Array.from({ length: MAX_TXN_OPS }, (_, i) => ({ key: `c${i}`, target: 'version', op: '>', value: i }));
    const command = txn({ compare, success: ops('s'), failure: ops('f') });
    expect(comparable(decodeCommand(encodeCommand(command)))).toStrictEqual(comparable(command));
  });

  test('decoded txn values are views into the entry data', () => {
    const data = encodeCommand(
      txn({ compare: [{ key: 'k', target: 'value', op: '=', value: bytes('c') }], success: [{ op: 'put', key: 'k', value: bytes('v') }] }),
    );
    const decoded = decodeCommand(data);
    if (decoded.op !== 'txn' || decoded.success[0].op !== 'put') throw new Error('expected a txn with a put');
    expect(decoded.success[0].value.buffer).toBe(data.buffer);
    expect((decoded.compare[0].value as Uint8Array).buffer).toBe(data.buffer);
  });

  test('optional fields are absent after decoding', () => {
    const decoded = decodeCommand(encodeCommand(txn({ success: [{ op: 'put', key: 'k', value: bytes('v') }] })));
    if (decoded.op !== 'txn') throw new Error('expected a txn');
    expect(Object.keys(decoded.success[0]).sort()).toEqual(['key', 'op', 'value']);
  });

  test('compact: a lease grant is 4 + 16 bytes, a revoke 4 + 9', () => {
    expect(encodeCommand({ op: 'leaseGrant', requestId: '', id: 1, ttlSeconds: 5 }).byteLength).toBe(20);
    expect(encodeCommand({ op: 'leaseRevoke', requestId: '', id: 1, reason: 'expire' }).byteLength).toBe(13);
  });
});

describe('encodeCommand validates txn and lease commands', () => {
  const put = (key: string): TxnOp => ({ op: 'put', key, value: bytes('v') });
  const many = <T>(n: number, make: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => make(i));

  test.each([
    ['a branch writing a key twice (put, put)', txn({ success: [put('k'), put('k')] }), /writes "k" more than once/],
    ['a branch writing a key twice (put, delete)', txn({ failure: [put('k'), { op: 'get', key: 'k' }, { op: 'delete', key: 'k' }] }), /failure branch writes "k"/],
    ['too many compares', txn({ compare: many(MAX_TXN_OPS + 1, (i) => ({ key: `k${i}`, target: 'version', op: '=', value: 1 })) }), /compare has 129/],
    ['too many success ops', txn({ success: many(MAX_TXN_OPS + 1, (i) => put(`k${i}`)) }), /success has 129/],
    ['too many failure ops', txn({ failure: many(MAX_TXN_OPS + 1, (i) => ({ op: 'get', key: `k${i}` })) }), /failure has 129/],
    ['a numeric compare with bytes', txn({ compare: [{ key: 'k', target: 'version', op: '=', value: bytes('1') }] }), /non-negative integer/],
    ['a negative compare number', txn({ compare: [{ key: 'k', target: 'modRevision', op: '>', value: -1 }] }), /non-negative integer/],
    ['a fractional compare number', txn({ compare: [{ key: 'k', target: 'modRevision', op: '>', value: 1.5 }] }), /non-negative integer/],
    ['a value compare with a number', txn({ compare: [{ key: 'k', target: 'value', op: '=', value: 1 }] }), /Uint8Array/],
    ['an unknown compare target', txn({ compare: [{ key: 'k', target: 'lease', op: '=', value: 1 } as unknown as Compare] }), /target/],
    ['an unknown compare op', txn({ compare: [{ key: 'k', target: 'version', op: '>=', value: 1 } as unknown as Compare] }), /compare op/],
    ['an unknown txn op', txn({ success: [{ op: 'range', key: 'k' } as unknown as TxnOp] }), /Unknown txn op/],
    ['a null txn op', txn({ failure: [null as unknown as TxnOp] }), /must hold objects/],
    ['a key that is not a string', txn({ success: [{ op: 'get', key: 7 as unknown as string }] }), /must be a string/],
    ['an empty key in a compare', txn({ compare: [{ key: '', target: 'version', op: '=', value: 1 }] }), /must not be empty/],
    ['an empty key in an op', txn({ success: [{ op: 'get', key: '' }] }), /must not be empty/],
    ['a txn put with lease 0', txn({ success: [{ op: 'put', key: 'k', value: bytes('v'), lease: 0 }] }), /lease must be a positive/],
    ['a grant with id 0', { op: 'leaseGrant', requestId: '', id: 0, ttlSeconds: 1 }, /lease id must be a positive/],
    ['a grant with id 2^53', { op: 'leaseGrant', requestId: '', id: 2 ** 53, ttlSeconds: 1 }, /lease id must be a positive/],
    ['a grant with ttl 0', { op: 'leaseGrant', requestId: '', id: 1, ttlSeconds: 0 }, /ttlSeconds/],
    ['a grant with a fractional ttl', { op: 'leaseGrant', requestId: '', id: 1, ttlSeconds: 0.5 }, /ttlSeconds/],
    ['a revoke with id -1', { op: 'leaseRevoke', requestId: '', id: -1, reason: 'revoke' }, /lease id/],
    ['a revoke with an unknown reason', { op: 'leaseRevoke', requestId: '', id: 1, reason: 'bored' } as unknown as Command, /reason/],
  ] as [string, Command, RegExp][])('rejects %s', (_, command, message) => {
    expect(() => encodeCommand(command)).toThrow(InvalidArgumentError);
    expect(() => encodeCommand(command)).toThrow(message);
  });

  test('a key too long in a txn is KEY_TOO_LARGE', () => {
    expect(() => encodeCommand(txn({ success: [{ op: 'get', key: 'k'.repeat(MAX_KEY_BYTES + 1) }] }))).toThrow(KeyTooLargeError);
  });

  test('a txn carries at most MAX_VALUE_BYTES of values in all (refused before copying anything)', () => {
    const half = new Uint8Array(MAX_VALUE_BYTES / 2);
    const ok = txn({ compare: [{ key: 'k', target: 'value', op: '=', value: half }], success: [{ op: 'put', key: 'k', value: half }] });
    expect(() => encodeCommand(ok)).not.toThrow();
    const over = txn({ ...ok, failure: [{ op: 'put', key: 'k', value: Uint8Array.of(1) }] });
    expect(() => encodeCommand(over)).toThrow(ValueTooLargeError);
  });
});

describe('decodeCommand rejects malformed txn and lease commands', () => {
  const validTxn = encodeCommand(
    txn({
      requestId: 'req',
      compare: [
        { key: 'a', target: 'value', op: '=', value: bytes('x') },
        { key: 'b', target: 'version', op: '>', value: 2 },
      ],
      success: [{ op: 'put', key: 'a', value: bytes('v'), lease: 3 }, { op: 'get', key: 'a' }],
      failure: [{ op: 'delete', key: 'b' }],
    }),
  );
  const grant = encodeCommand({ op: 'leaseGrant', requestId: 'g', id: 5, ttlSeconds: 10 });
  const revoke = encodeCommand({ op: 'leaseRevoke', requestId: 'r', id: 5, reason: 'expire' });

  test.each([
    ['txn', validTxn],
    ['leaseGrant', grant],
    ['leaseRevoke', revoke],
  ])('every truncation of a %s, and trailing bytes', (_, valid) => {
    expect(decodeError(valid)).toBeNull();
    for (let n = 0; n < valid.length; n++) {
      expect(decodeError(valid.subarray(0, n)), `prefix of ${n} bytes`).toBeInstanceOf(CorruptDataError);
    }
    expect(decodeError(Buffer.concat([valid, Buffer.of(0)]))).toBeInstanceOf(CorruptDataError);
  });

  // Offsets into validTxn: header 4 + "req" 3 = 7, counts at 7..9, first compare at 10.
  test.each([
    ['flags on a txn', validTxn, 2, 0x01, /flags 0x1 for txn/],
    ['flags on a grant', grant, 2, 0x04, /flags 0x4 for leaseGrant/],
    ['a compare count over MAX_TXN_OPS', validTxn, 7, MAX_TXN_OPS + 1, /txn counts/],
    ['a failure count over MAX_TXN_OPS', validTxn, 9, 200, /txn counts/],
    ['an unknown compare target', validTxn, 10, 4, /compare target or op/],
    ['an unknown compare op', validTxn, 11, 9, /compare target or op/],
    ['an unknown revoke reason', revoke, revoke.length - 1, 2, /revoke reason/],
    ['a grant with ttl 0', grant, grant.length - 1, 0, /ttlSeconds 0/],
    ['a revoke of lease 0', revoke, revoke.length - 2, 0, /lease 0/],
  ] as const)('%s', (_, valid, offset, byte, message) => {
    const bad = Buffer.from(valid);
    bad[offset] = byte;
    const err = decodeError(bad);
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as Error).message).toMatch(message);
  });

  test('a txn op with an unknown kind or a lease flag on a get', () => {
    const data = encodeCommand(txn({ requestId: '', success: [{ op: 'get', key: 'k' }] }));
    // header 4, counts 3, then the op: kind at 7, flags at 8.
    const badKind = Buffer.from(data);
    badKind[7] = 9;
    expect((decodeError(badKind) as Error).message).toMatch(/unknown txn op 9/);
    const badFlags = Buffer.from(data);
    badFlags[8] = 0x04;
    expect((decodeError(badFlags) as Error).message).toMatch(/txn op flags/);
  });

  test('a branch that writes a key twice (which encode never produces)', () => {
    const data = Buffer.from(encodeCommand(txn({ requestId: '', success: [{ op: 'delete', key: 'a' }, { op: 'delete', key: 'b' }] })));
    data[data.length - 1] = 'a'.charCodeAt(0); // the second delete now names "a" too
    expect((decodeError(data) as Error).message).toMatch(/writes "a" twice/);
  });

  test('a grant of an id beyond 2^53', () => {
    const bad = Buffer.from(grant);
    bad[grant.length - 16] = 0x01;
    expect((decodeError(bad) as Error).message).toMatch(/lease does not fit/);
  });

  test('random bytes after a txn or lease header decode to a command or fail with CorruptDataError', () => {
    const rng = new SeededRng(11);
    let decoded = 0;
    for (let i = 0; i < 20_000; i++) {
      const junk = Uint8Array.from({ length: rng.int(0, 60) }, () => (rng.chance(0.6) ? rng.int(0, 4) : rng.int(0, 256)));
      if (junk.length > 3) junk.set([1, rng.int(3, 6), 0, 0], 0); // version 1, op 3..5, no flags, empty requestId
      const err = decodeError(junk);
      if (err === null) decoded++;
      else expect(err).toBeInstanceOf(CorruptDataError);
    }
    expect(decoded).toBeGreaterThan(0); // the fuzz does reach well-formed commands
  });
});
