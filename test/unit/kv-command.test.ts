import { describe, expect, test } from 'vitest';
import {
  decodeCommand,
  encodeCommand,
  MAX_KEY_BYTES,
  MAX_REQUEST_ID_BYTES,
  MAX_VALUE_BYTES,
  validateKey,
  type Command,
} from '../../src/kv/command.js';
import { CorruptDataError, InvalidArgumentError, KeyTooLargeError } from '../../src/kv/errors.js';
import { SeededRng } from '../../src/util/rng.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

const SAMPLES: Command[] = [
  { op: 'put', requestId: 'n1-42', key: 'a/b', value: bytes('hello') },
  { op: 'put', requestId: '', key: 'k', value: new Uint8Array(0) },
  { op: 'put', requestId: 'r', key: 'x', value: bytes('v'), ifMatch: 7, lease: 99 },
  { op: 'put', requestId: 'r', key: 'x', value: bytes('v'), ifNoneMatch: true },
  { op: 'put', requestId: 'r', key: 'big', value: bytes('v'), ifMatch: Number.MAX_SAFE_INTEGER, lease: 2 ** 40 + 3 },
  { op: 'put', requestId: 'ünï', key: '\uFEFFkey é 🚀 日本', value: Uint8Array.of(0, 255, 128) },
  { op: 'delete', requestId: 'd', key: 'gone' },
  { op: 'delete', requestId: 'd', key: 'gone', ifMatch: 0 },
  { op: 'delete', requestId: 'd', key: 'gone', ifMatch: 3, ifNoneMatch: true },
  { op: 'put', requestId: 'x'.repeat(MAX_REQUEST_ID_BYTES), key: 'k'.repeat(MAX_KEY_BYTES), value: bytes('v') },
];

function decodeError(data: Uint8Array): unknown {
  try {
    decodeCommand(data);
    return null;
  } catch (err) {
    return err;
  }
}

describe('command encoding', () => {
  test.each(SAMPLES.map((c, i) => [i, c] as const))('sample %i round-trips', (_, command) => {
    const decoded = decodeCommand(encodeCommand(command));
    const { value: _decodedValue, ...decodedRest } = { value: undefined, ...decoded };
    const { value: _value, ...rest } = { value: undefined, ...command };
    expect(decodedRest).toStrictEqual(rest);
    if (command.op === 'put') {
      expect(decoded.op === 'put' && Buffer.from(decoded.value).equals(command.value)).toBe(true);
    }
  });

  test('optional fields are absent, not undefined, after decoding', () => {
    const decoded = decodeCommand(encodeCommand({ op: 'delete', requestId: '', key: 'k' }));
    expect(Object.keys(decoded).sort()).toEqual(['key', 'op', 'requestId']);
  });

  test('the decoded value is a view into the entry data, not a copy', () => {
    const data = encodeCommand({ op: 'put', requestId: '', key: 'k', value: bytes('abc') });
    const decoded = decodeCommand(data);
    if (decoded.op !== 'put') throw new Error('expected a put');
    expect(decoded.value.buffer).toBe(data.buffer);
  });

  test('a put is compact: 10 bytes of framing around the key and value', () => {
    const data = encodeCommand({ op: 'put', requestId: '', key: 'k', value: bytes('abcd') });
    expect(data.byteLength).toBe(10 + 'k'.length + 'abcd'.length);
  });

  test('a 4 MiB value round-trips', () => {
    const value = new Uint8Array(4 * 1024 * 1024).map((_, i) => (i * 31) & 0xff);
    const decoded = decodeCommand(encodeCommand({ op: 'put', requestId: 'r', key: 'k', value }));
    if (decoded.op !== 'put') throw new Error('expected a put');
    expect(Buffer.compare(decoded.value, value)).toBe(0);
  });
});

describe('decodeCommand rejects garbage with CorruptDataError', () => {
  const valid = encodeCommand({ op: 'put', requestId: 'req', key: 'a/b', value: bytes('value'), ifMatch: 5, lease: 9 });

  test('every truncation of a valid command', () => {
    for (let n = 0; n < valid.length; n++) {
      expect(decodeError(valid.subarray(0, n)), `prefix of ${n} bytes`).toBeInstanceOf(CorruptDataError);
    }
  });

  test('trailing bytes', () => {
    expect(decodeError(Buffer.concat([valid, Buffer.of(0)]))).toBeInstanceOf(CorruptDataError);
  });

  test.each([
    ['an unknown format version', 0, 2, /format version 2/],
    ['a reserved op code (leaseExpire)', 1, 6, /reserved/],
    ['a reserved op code (compact)', 1, 7, /reserved/],
    ['an unknown op code', 1, 200, /unknown op code 200/],
    ['unknown flags', 2, 0x08 | 0x01 | 0x04, /flags/],
    ['a requestId longer than allowed', 3, MAX_REQUEST_ID_BYTES + 1, /requestId/],
  ])('%s', (_, offset, byte, message) => {
    const bad = Buffer.from(valid);
    bad[offset] = byte;
    const err = decodeError(bad);
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as CorruptDataError).code).toBe('CORRUPT_DATA');
    expect((err as Error).message).toMatch(message);
  });

  test('a delete carrying a lease flag', () => {
    const del = Buffer.from(encodeCommand({ op: 'delete', requestId: '', key: 'k' }));
    del[2] = 0x04;
    expect(decodeError(del)).toBeInstanceOf(CorruptDataError);
  });

  test('an empty key', () => {
    const del = Buffer.from(encodeCommand({ op: 'delete', requestId: '', key: 'k' }));
    expect(decodeError(Buffer.concat([del.subarray(0, 4), Buffer.of(0, 0)]))).toBeInstanceOf(CorruptDataError);
  });

  test('a key that is not UTF-8', () => {
    const del = Buffer.from(encodeCommand({ op: 'delete', requestId: '', key: 'ab' }));
    del[del.length - 1] = 0xff;
    expect((decodeError(del) as Error).message).toMatch(/key is not valid UTF-8/);
  });

  test('an ifMatch beyond 2^53', () => {
    const del = Buffer.from(encodeCommand({ op: 'delete', requestId: '', key: 'k', ifMatch: 1 }));
    del[del.length - 8] = 0x00;
    del[del.length - 7] = 0x20; // 2^53
    expect((decodeError(del) as Error).message).toMatch(/ifMatch does not fit/);
  });

  test('random bytes never decode into anything but a command or CorruptDataError', () => {
    const rng = new SeededRng(7);
    for (let i = 0; i < 5_000; i++) {
      const junk = Uint8Array.from({ length: rng.int(0, 40) }, () => rng.int(0, 256));
      if (rng.chance(0.5) && junk.length > 2) junk.set([1, rng.int(1, 3)], 0); // often a plausible header
      const err = decodeError(junk);
      if (err !== null) expect(err).toBeInstanceOf(CorruptDataError);
    }
  });
});

describe('encodeCommand validates', () => {
  test.each([
    ['an empty key', { op: 'put', requestId: '', key: '', value: bytes('v') }, InvalidArgumentError],
    ['a key with a lone surrogate', { op: 'delete', requestId: '', key: 'a\uD800b' }, InvalidArgumentError],
    ['a key over MAX_KEY_BYTES', { op: 'delete', requestId: '', key: 'é'.repeat(Math.ceil((MAX_KEY_BYTES + 1) / 2)) }, KeyTooLargeError],
    ['a long requestId', { op: 'delete', requestId: 'r'.repeat(MAX_REQUEST_ID_BYTES + 1), key: 'k' }, InvalidArgumentError],
    ['a negative ifMatch', { op: 'delete', requestId: '', key: 'k', ifMatch: -1 }, InvalidArgumentError],
    ['a fractional ifMatch', { op: 'delete', requestId: '', key: 'k', ifMatch: 1.5 }, InvalidArgumentError],
    ['lease 0', { op: 'put', requestId: '', key: 'k', value: bytes('v'), lease: 0 }, InvalidArgumentError],
    ['an unknown op', { op: 'compact', requestId: '', key: 'k' } as unknown as Command, InvalidArgumentError],
    ['a txn without its lists', { op: 'txn', requestId: '', key: 'k' } as unknown as Command, InvalidArgumentError],
  ] as const)('rejects %s', (_, command, errorClass) => {
    expect(() => encodeCommand(command as Command)).toThrow(errorClass);
  });

  test('rejects a value over MAX_VALUE_BYTES with VALUE_TOO_LARGE', () => {
    const command: Command = { op: 'put', requestId: '', key: 'k', value: new Uint8Array(MAX_VALUE_BYTES + 1) };
    expect(() => encodeCommand(command)).toThrow(expect.objectContaining({ code: 'VALUE_TOO_LARGE' }));
  });

  test('validateKey accepts a key with slashes and dots taken literally', () => {
    expect(() => validateKey('a/../b/./c')).not.toThrow();
    expect(() => validateKey('')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
