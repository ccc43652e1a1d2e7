import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (IEEE 802.3, the zlib/PNG polynomial) of bytes, continuing from `previous` (the CRC of
 * the bytes before them; 0 to start), so a checksum can cover pieces that are not contiguous in
 * memory: `crc32(b, crc32(a)) === crc32(a ++ b)`. Returns an unsigned 32-bit integer. Used to
 * checksum each stored log entry, state record and snapshot block, so a flipped bit on disk is
 * reported instead of replayed into the state machine.
 *
 * zlib's (Node >= 20.15): the same values as the table-driven JavaScript this replaced, so data
 * written before reads back unchanged, and 4.5x faster on a 64 KiB value (12 µs against 55 µs;
 * 184 µs against 649 µs on 1 MiB), on the write hot path.
 */
export function crc32(bytes: Uint8Array, previous = 0): number {
  return zlibCrc32(bytes, previous);
}
