import { describe, expect, test } from 'vitest';
import { CorruptDataError } from '../../src/kv/errors.js';
import { decodeRecord, decodeRecordMeta, encodeRecord } from '../../src/kv/kv-record.js';

// decodeRecord reads a well-formed header in place; anything else must fail exactly as the
// byte reader reports it (decodeRecordMeta still goes through the reader).

const META = { createRevision: 3, modRevision: 7, version: 2, lease: 9 };

function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CorruptDataError);
    return (e as Error).message;
  }
  throw new Error('did not throw');
}

describe('decodeRecord', () => {
  test('round trip; the value is a view into the stored bytes', () => {
    const stored = encodeRecord(META, Buffer.from('hello'));
    const r = decodeRecord('k', stored);
    expect(r).toEqual({ key: 'k', value: Buffer.from('hello'), ...META });
    expect(Object.keys(r)).toEqual(['key', 'value', 'createRevision', 'modRevision', 'version', 'lease']);
    expect((r.value as Buffer).buffer).toBe(stored.buffer);
    const empty = decodeRecord('e', encodeRecord(META, new Uint8Array(0)));
    expect(empty.value.byteLength).toBe(0);
    // A Uint8Array (not a Buffer) at an offset decodes the same.
    const padded = new Uint8Array(stored.length + 3);
    padded.set(stored, 3);
    expect(decodeRecord('k', padded.subarray(3))).toEqual(r);
  });

  test('corrupt records fail with the same message as the reader gives', () => {
    const good = encodeRecord(META, Buffer.from('v'));
    const cases: Buffer[] = [
      good.subarray(0, 10), // truncated header
      Buffer.concat([Buffer.from([2]), good.subarray(1)]), // unknown format
      encodeRecord({ ...META, createRevision: 0 }, Buffer.from('v')),
      encodeRecord({ ...META, modRevision: 2 }, Buffer.from('v')),
      encodeRecord({ ...META, version: 0 }, Buffer.from('v')),
    ];
    const tooBig = Buffer.from(good);
    tooBig.writeUInt32BE(0xffffffff, 1 + 8 * 3); // lease beyond 2^53
    cases.push(tooBig);
    for (const stored of cases) {
      const message = errorOf(() => decodeRecord('k', stored));
      expect(message).toBe(errorOf(() => decodeRecordMeta('k', stored)));
      expect(message).toMatch(/^Stored record of key "k" is corrupt: /);
    }
  });
});
