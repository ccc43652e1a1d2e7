import { describe, expect, test } from 'vitest';
import { crc32 } from '../../src/storage/crc32.js';

// Every log entry, state record and snapshot block on disk carries this checksum, so its values
// must never change: the expected values below were computed by the table-driven JavaScript
// implementation that wrote the data dirs before zlib's took over.

function pattern(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + 7) & 255;
  return bytes;
}

describe('crc32', () => {
  test('the standard check value and the empty input', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  test('the values the earlier implementation wrote to disk, unsigned', () => {
    const bytes = pattern(70_000);
    expect(crc32(bytes)).toBe(0xd673423a);
    expect(crc32(bytes, 0x12345678)).toBe(0xbc44eae8);
    expect(crc32(bytes.subarray(0, 13))).toBe(0xb64e57ac);
  });

  test('continues across pieces: crc32(b, crc32(a)) is crc32(a ++ b)', () => {
    const bytes = pattern(10_007);
    for (const cut of [0, 1, 8, 4096, 10_006, 10_007]) {
      expect(crc32(bytes.subarray(cut), crc32(bytes.subarray(0, cut)))).toBe(crc32(bytes));
    }
  });
});
