import { describe, expect, test } from 'vitest';
import { encodeConfig } from '../../src/raft/config.js';
import type { Entry, Message, MessageType } from '../../src/raft/types.js';
import { CodecError, decodeBatch, encodeBatch } from '../../src/transport/codec.js';
import { SeededRng } from '../../src/util/rng.js';

const bytes = (...b: number[]) => new Uint8Array(b);
const text = (s: string) => new TextEncoder().encode(s);

function entries(prevIndex: number, term: number, datas: Uint8Array[]): Entry[] {
  return datas.map((data, i) => ({ index: prevIndex + 1 + i, term, type: 'normal' as const, data }));
}

/** At least one sample of every message type; the Record makes a new type a compile error here. */
const SAMPLES: Record<MessageType, Message[]> = {
  preVote: [
    { type: 'preVote', from: 'n1', to: 'n2', term: 4, lastLogIndex: 17, lastLogTerm: 3, transfer: false },
    { type: 'preVote', from: 'n1', to: 'n2', term: 0, lastLogIndex: 0, lastLogTerm: 0, transfer: true },
  ],
  vote: [
    { type: 'vote', from: 'n3', to: 'n1', term: 5, lastLogIndex: 2 ** 53 - 1, lastLogTerm: 2 ** 40, transfer: true },
    { type: 'vote', from: 'n3', to: 'n1', term: 5, lastLogIndex: 9, lastLogTerm: 4, transfer: false },
  ],
  preVoteResp: [
    { type: 'preVoteResp', from: 'n2', to: 'n1', term: 4, granted: true },
    { type: 'preVoteResp', from: 'n2', to: 'n1', term: 4, granted: false },
  ],
  voteResp: [
    { type: 'voteResp', from: 'n1', to: 'n3', term: 5, granted: false },
    { type: 'voteResp', from: 'n1', to: 'n3', term: 5, granted: true },
  ],
  append: [
    { type: 'append', from: 'n1', to: 'n2', term: 2, prevIndex: 0, prevTerm: 0, commit: 0, entries: [] },
    { type: 'append', from: 'n1', to: 'n2', term: 2, prevIndex: 7, prevTerm: 1, commit: 6, entries: entries(7, 2, [bytes(1, 2, 3)]) },
    {
      type: 'append', from: 'n1', to: 'n3', term: 3, prevIndex: 100, prevTerm: 2, commit: 99,
      entries: [
        ...entries(100, 3, [new Uint8Array(0), text('put a=1'), bytes(0, 255, 0, 255)]),
        { index: 104, term: 3, type: 'config', data: encodeConfig({ voters: ['n1', 'n2', 'n3'], learners: ['n4'] }) },
        ...entries(104, 3, Array.from({ length: 50 }, (_, i) => text(`value-${i}`))),
      ],
    },
  ],
  appendResp: [
    { type: 'appendResp', from: 'n2', to: 'n1', term: 2, success: true, matchIndex: 8, rejectedIndex: 0, conflictTerm: 0, conflictIndex: 0 },
    { type: 'appendResp', from: 'n2', to: 'n1', term: 2, success: false, matchIndex: 0, rejectedIndex: 7, conflictTerm: 1, conflictIndex: 5 },
  ],
  heartbeat: [{ type: 'heartbeat', from: 'n1', to: 'n2', term: 9, commit: 41, round: 1234 }],
  heartbeatResp: [{ type: 'heartbeatResp', from: 'n2', to: 'n1', term: 9, round: 1234 }],
  snapshot: [
    { type: 'snapshot', from: 'n1', to: 'n4', term: 6, snapshot: { index: 500, term: 5, config: { voters: ['n1', 'n2', 'n3'], learners: ['n4'] } } },
    { type: 'snapshot', from: 'n1', to: 'n4', term: 6, snapshot: { index: 0, term: 0, config: { voters: [], learners: [] } } },
  ],
  timeoutNow: [{ type: 'timeoutNow', from: 'n1', to: 'n2', term: 7 }],
  readIndex: [{ type: 'readIndex', from: 'n3', to: 'n1', term: 7, context: 42 }],
  readIndexResp: [
    { type: 'readIndexResp', from: 'n1', to: 'n3', term: 7, context: 42, index: 99 },
    { type: 'readIndexResp', from: 'n1', to: 'n3', term: 7, context: 43, index: 0 },
  ],
};

const ALL: Message[] = Object.values(SAMPLES).flat();

/** Entry data compares as bytes, whatever view type holds them. */
function normalize(messages: readonly Message[]): unknown[] {
  return messages.map((m) =>
    m.type === 'append'
      ? { ...m, entries: m.entries.map((e) => ({ ...e, data: Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString('base64') })) }
      : { ...m },
  );
}

function roundTrip(messages: readonly Message[]): Message[] {
  const decoded = decodeBatch(encodeBatch(messages));
  expect(normalize(decoded)).toEqual(normalize(messages));
  return decoded;
}

/** Decoding must throw exactly a CodecError; returns its message. */
function rejects(buf: Uint8Array): string {
  let thrown: unknown;
  try {
    decodeBatch(buf);
  } catch (err) {
    thrown = err;
  }
  if (!(thrown instanceof CodecError)) {
    throw new Error(`expected a CodecError, got ${thrown === undefined ? 'a successful decode' : String(thrown)}`);
  }
  return thrown.message;
}

/** The offset of the one byte where two encodings differ (to patch fields without hard-coding offsets). */
function offsetOfDifference(a: Uint8Array, b: Uint8Array): number {
  expect(a.byteLength).toBe(b.byteLength);
  const diffs: number[] = [];
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) diffs.push(i);
  expect(diffs).toHaveLength(1);
  return diffs[0];
}

function copy(buf: Uint8Array): Buffer {
  return Buffer.from(buf);
}

describe('round trips', () => {
  test.each(Object.keys(SAMPLES))('%s', (type) => {
    const samples = SAMPLES[type as MessageType];
    expect(samples.length).toBeGreaterThan(0);
    for (const m of samples) {
      expect(m.type).toBe(type);
      roundTrip([m]);
    }
  });

  test('every type in one batch, in order', () => {
    const decoded = roundTrip(ALL);
    expect(decoded.map((m) => m.type)).toEqual(ALL.map((m) => m.type));
  });

  test('an empty batch', () => {
    expect(decodeBatch(encodeBatch([]))).toEqual([]);
  });

  test('append with 0, 1 and many entries', () => {
    for (const n of [0, 1, 2, 1000]) {
      const m: Message = {
        type: 'append', from: 'n1', to: 'n2', term: 3, prevIndex: 10, prevTerm: 2, commit: 10,
        entries: entries(10, 3, Array.from({ length: n }, (_, i) => text(`k${i}=v${i}`))),
      };
      const [d] = roundTrip([m]);
      expect(d.type === 'append' && d.entries.length).toBe(n);
    }
  });

  test('empty and 1 MiB entry data', () => {
    const big = new Uint8Array(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 7) & 0xff;
    const m: Message = {
      type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commit: 0,
      entries: entries(0, 1, [new Uint8Array(0), big, new Uint8Array(0)]),
    };
    const [d] = roundTrip([m]);
    if (d.type !== 'append') throw new Error('not an append');
    expect(d.entries.map((e) => e.data.byteLength)).toEqual([0, 1024 * 1024, 0]);
    expect(Buffer.compare(Buffer.from(d.entries[1].data), Buffer.from(big))).toBe(0);
  });

  test('entry data that is a view into a larger buffer is encoded as just the view', () => {
    const backing = text('xxxxHELLOyyyy');
    const m: Message = {
      type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commit: 0,
      entries: entries(0, 1, [backing.subarray(4, 9)]),
    };
    const [d] = roundTrip([m]);
    expect(d.type === 'append' && Buffer.from(d.entries[0].data).toString()).toBe('HELLO');
  });

  test('config entries', () => {
    const config = encodeConfig({ voters: ['n1', 'n2'], learners: ['n3'] });
    const m: Message = {
      type: 'append', from: 'n1', to: 'n2', term: 2, prevIndex: 3, prevTerm: 1, commit: 3,
      entries: [
        { index: 4, term: 2, type: 'normal', data: new Uint8Array(0) },
        { index: 5, term: 2, type: 'config', data: config },
      ],
    };
    const [d] = roundTrip([m]);
    expect(d.type === 'append' && d.entries.map((e) => e.type)).toEqual(['normal', 'config']);
  });

  test('unicode member names', () => {
    const names = ['nœud-1', '节点二', 'ноды', '🚀-rocket', 'e\u0301', '\u00e9', 'a\u0000b', ''];
    const batch: Message[] = names.flatMap((name): Message[] => [
      { type: 'heartbeat', from: name, to: names[0], term: 1, commit: 0, round: 1 },
      { type: 'snapshot', from: 'n1', to: name, term: 1, snapshot: { index: 3, term: 1, config: { voters: names, learners: [name] } } },
    ]);
    const decoded = roundTrip(batch);
    // No normalization: NFD 'e\u0301' and NFC '\u00e9' stay distinct.
    expect(decoded[8]).toMatchObject({ from: 'e\u0301' });
    expect(decoded[10]).toMatchObject({ from: '\u00e9' });
  });

  test('decoded entry data is a view of the input, not a copy', () => {
    const m: Message = {
      type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commit: 0,
      entries: entries(0, 1, [text('first'), new Uint8Array(64 * 1024).fill(9), text('third')]),
    };
    // Both a pooled Buffer and a Uint8Array at a non-zero offset of a larger ArrayBuffer.
    const encoded = encodeBatch([m]);
    const backing = new ArrayBuffer(encoded.byteLength + 100);
    const offsetCopy = new Uint8Array(backing, 37, encoded.byteLength);
    offsetCopy.set(encoded);
    for (const input of [encoded, offsetCopy]) {
      const [d] = decodeBatch(input);
      if (d.type !== 'append') throw new Error('not an append');
      for (const e of d.entries) {
        expect(e.data.buffer).toBe(input.buffer);
        expect(e.data.byteOffset).toBeGreaterThanOrEqual(input.byteOffset);
        expect(e.data.byteOffset + e.data.byteLength).toBeLessThanOrEqual(input.byteOffset + input.byteLength);
      }
      // Writing through the input shows through the decoded entry.
      const first = d.entries[0].data;
      input[first.byteOffset - input.byteOffset] = 'F'.charCodeAt(0);
      expect(Buffer.from(first).toString()).toBe('First');
    }
  });
});

describe('garbage is rejected with CodecError', () => {
  const small: Message[] = [
    { type: 'vote', from: 'n1', to: 'n2', term: 3, lastLogIndex: 4, lastLogTerm: 2, transfer: false },
    { type: 'append', from: 'n1', to: 'n2', term: 3, prevIndex: 4, prevTerm: 2, commit: 4, entries: entries(4, 3, [text('ab'), new Uint8Array(0)]) },
    { type: 'snapshot', from: 'n1', to: 'n3', term: 3, snapshot: { index: 4, term: 2, config: { voters: ['n1', 'n2'], learners: ['n3'] } } },
  ];
  const valid = encodeBatch(small);

  test('the small batch itself is valid', () => {
    roundTrip(small);
  });

  test('wrong magic', () => {
    for (const magic of [0x00, 0xf0, 0xf2, 0xff, '{'.charCodeAt(0)]) {
      const b = copy(valid);
      b[0] = magic;
      rejects(b);
    }
  });

  test('wrong version', () => {
    for (const version of [0, 2, 255]) {
      const b = copy(valid);
      b[1] = version;
      expect(rejects(b)).toContain(String(version));
    }
  });

  test('truncated at every byte offset', () => {
    for (let n = 0; n < valid.byteLength; n++) {
      try {
        rejects(valid.subarray(0, n));
      } catch (err) {
        throw new Error(`prefix of ${n}/${valid.byteLength} bytes: ${(err as Error).message}`);
      }
    }
  });

  test('truncated at every byte offset, also when the prefix is a fresh copy', () => {
    for (let n = 0; n < valid.byteLength; n++) rejects(new Uint8Array(valid.subarray(0, n)));
  });

  test('trailing bytes', () => {
    rejects(Buffer.concat([valid, bytes(0)]));
    rejects(Buffer.concat([valid, valid]));
    rejects(Buffer.concat([encodeBatch([]), bytes(1)]));
  });

  test('unknown type code', () => {
    for (const code of [0, 13, 99, 255]) {
      const b = copy(valid);
      b[6] = code; // the first message's type: after magic, version and count
      expect(rejects(b)).toContain(String(code));
    }
  });

  test('unknown entry type', () => {
    const mk = (type: 'normal' | 'config'): Message => ({
      type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commit: 0,
      entries: [{ index: 1, term: 1, type, data: text('x') }],
    });
    const normal = encodeBatch([mk('normal')]);
    const at = offsetOfDifference(normal, encodeBatch([mk('config')]));
    for (const t of [2, 3, 255]) {
      const b = copy(normal);
      b[at] = t;
      rejects(b);
    }
  });

  test('entry index out of sequence', () => {
    const base = { type: 'append' as const, from: 'n1', to: 'n2', term: 2, prevTerm: 1, commit: 0 };
    const e = (index: number): Entry => ({ index, term: 2, type: 'normal', data: text(`e${index}`) });
    // A gap, a repeat, going backwards, and a first entry that does not follow prevIndex.
    expect(rejects(encodeBatch([{ ...base, prevIndex: 4, entries: [e(5), e(7)] }]))).toMatch(/sequence/);
    rejects(encodeBatch([{ ...base, prevIndex: 4, entries: [e(5), e(5)] }]));
    rejects(encodeBatch([{ ...base, prevIndex: 4, entries: [e(5), e(6), e(4)] }]));
    rejects(encodeBatch([{ ...base, prevIndex: 4, entries: [e(6)] }]));
    rejects(encodeBatch([{ ...base, prevIndex: 4, entries: [e(4)] }]));
  });

  test.each([NaN, -1, -0.5, 1.5, Infinity, -Infinity, 2 ** 53, 2 ** 64])('the number %d in any numeric field', (bad) => {
    const victims: Message[] = [
      { type: 'heartbeat', from: 'n1', to: 'n2', term: bad, commit: 1, round: 1 },
      { type: 'heartbeat', from: 'n1', to: 'n2', term: 1, commit: bad, round: 1 },
      { type: 'heartbeat', from: 'n1', to: 'n2', term: 1, commit: 1, round: bad },
      { type: 'vote', from: 'n1', to: 'n2', term: 1, lastLogIndex: bad, lastLogTerm: 0, transfer: false },
      { type: 'preVote', from: 'n1', to: 'n2', term: 1, lastLogIndex: 0, lastLogTerm: bad, transfer: false },
      { type: 'appendResp', from: 'n1', to: 'n2', term: 1, success: true, matchIndex: bad, rejectedIndex: 0, conflictTerm: 0, conflictIndex: 0 },
      { type: 'appendResp', from: 'n1', to: 'n2', term: 1, success: false, matchIndex: 0, rejectedIndex: 0, conflictTerm: 0, conflictIndex: bad },
      { type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: bad, commit: 0, entries: [] },
      { type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commit: bad, entries: [] },
      { type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries: [{ index: 1, term: bad, type: 'normal', data: text('x') }] },
      { type: 'snapshot', from: 'n1', to: 'n2', term: 1, snapshot: { index: bad, term: 1, config: { voters: ['n1'], learners: [] } } },
      { type: 'snapshot', from: 'n1', to: 'n2', term: 1, snapshot: { index: 1, term: bad, config: { voters: ['n1'], learners: [] } } },
      { type: 'readIndex', from: 'n1', to: 'n2', term: 1, context: bad },
      { type: 'readIndexResp', from: 'n1', to: 'n2', term: 1, context: 1, index: bad },
      { type: 'heartbeatResp', from: 'n1', to: 'n2', term: 1, round: bad },
    ];
    for (const m of victims) {
      try {
        rejects(encodeBatch([m]));
      } catch (err) {
        throw new Error(`${JSON.stringify(m)}: ${(err as Error).message}`);
      }
    }
  });

  test('a bad number in append prevIndex (so entry indexes cannot be checked)', () => {
    for (const bad of [NaN, -1, 0.5]) {
      rejects(encodeBatch([{ type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: bad, prevTerm: 0, commit: 0, entries: [] }]));
    }
  });

  test('a count that claims more messages than present', () => {
    for (const extra of [1, 2, 1000, 100_000]) {
      const b = copy(valid);
      b.writeUInt32LE(small.length + extra, 2);
      rejects(b);
    }
    const huge = copy(valid);
    huge.writeUInt32LE(0xffffffff, 2);
    rejects(huge);
  });

  test('a count that claims fewer messages than present', () => {
    const b = copy(valid);
    b.writeUInt32LE(small.length - 1, 2);
    rejects(b);
  });

  test('an entry count or data length that claims more than present', () => {
    const one: Message = { type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries: entries(0, 1, [text('abc')]) };
    const enc = encodeBatch([one]);
    // The batch ends with: entry count u32, index f64, term f64, type u8, data length u32, data.
    const dataLenAt = enc.byteLength - 3 - 4;
    expect(enc.readUInt32LE(dataLenAt)).toBe(3);
    for (const n of [4, 1000, 0xffffffff]) {
      const b = copy(enc);
      b.writeUInt32LE(n, dataLenAt);
      rejects(b);
    }
    const countAt = dataLenAt - 1 - 8 - 8 - 4;
    expect(enc.readUInt32LE(countAt)).toBe(1);
    for (const n of [2, 1000, 0xffffffff]) {
      const b = copy(enc);
      b.writeUInt32LE(n, countAt);
      rejects(b);
    }
  });

  test('a string length beyond the buffer, and invalid UTF-8 in a name', () => {
    const m: Message = { type: 'timeoutNow', from: 'ab', to: 'n2', term: 1 };
    const enc = encodeBatch([m]);
    expect(enc.readUInt16LE(7)).toBe(2); // `from` length right after the type code
    const long = copy(enc);
    long.writeUInt16LE(60_000, 7);
    rejects(long);
    const bad = copy(enc);
    bad[9] = 0xff;
    bad[10] = 0xfe;
    expect(rejects(bad)).toMatch(/UTF-8/);
  });

  test('arbitrary inputs: empty, tiny, JSON, zeros', () => {
    rejects(new Uint8Array(0));
    rejects(bytes(0xf1));
    rejects(bytes(0xf1, 1));
    rejects(bytes(0xf1, 1, 0, 0, 0));
    rejects(text('{"type":"append"}'));
    rejects(new Uint8Array(64));
  });
});

describe('seeded fuzz', () => {
  const SEED = 20_240_601;
  const ITERATIONS = 2_000;
  const valid = encodeBatch([...ALL.filter((m) => m.type !== 'append'), ...SAMPLES.append.slice(0, 2)]);

  function decodeOrCodecError(buf: Uint8Array, what: string): void {
    let decoded: Message[];
    try {
      decoded = decodeBatch(buf);
    } catch (err) {
      if (err instanceof CodecError) return;
      throw new Error(`${what}: threw ${String(err)} instead of CodecError`);
    }
    // It decoded to *something*: a well-formed list of messages.
    expect(Array.isArray(decoded), what).toBe(true);
    for (const m of decoded) expect(Object.keys(SAMPLES), what).toContain(m.type);
  }

  test(`flipping random bytes of a valid batch (seed ${SEED}, ${ITERATIONS} iterations)`, () => {
    const rng = new SeededRng(SEED);
    let rejected = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const b = copy(valid);
      const flips = rng.int(1, 5);
      for (let f = 0; f < flips; f++) b[rng.int(0, b.length)] ^= rng.int(1, 256);
      try {
        decodeBatch(b);
      } catch (err) {
        if (!(err instanceof CodecError)) throw new Error(`seed ${SEED} iteration ${i}: threw ${String(err)} instead of CodecError`);
        rejected++;
        continue;
      }
      decodeOrCodecError(b, `seed ${SEED} iteration ${i}`);
    }
    // The fuzz must actually reach the error paths (and not reject everything trivially).
    expect(rejected).toBeGreaterThan(ITERATIONS / 10);
    expect(rejected).toBeLessThan(ITERATIONS);
  });

  test(`random bytes after a valid header (seed ${SEED + 1}, ${ITERATIONS} iterations)`, () => {
    const rng = new SeededRng(SEED + 1);
    for (let i = 0; i < ITERATIONS; i++) {
      const b = Buffer.alloc(rng.int(0, 200));
      for (let j = 0; j < b.length; j++) b[j] = rng.int(0, 256);
      if (b.length >= 6) {
        b[0] = 0xf1;
        b[1] = 1;
        b.writeUInt32LE(rng.int(0, 4), 2);
      }
      if (b.length >= 7) b[6] = rng.int(1, 13);
      decodeOrCodecError(b, `seed ${SEED + 1} iteration ${i}`);
    }
  });

  test(`random truncation plus flips (seed ${SEED + 2}, ${ITERATIONS} iterations)`, () => {
    const rng = new SeededRng(SEED + 2);
    for (let i = 0; i < ITERATIONS; i++) {
      const b = copy(valid.subarray(0, rng.int(0, valid.length + 1)));
      if (b.length > 0) b[rng.int(0, b.length)] ^= rng.int(1, 256);
      decodeOrCodecError(b, `seed ${SEED + 2} iteration ${i}`);
    }
  });
});
