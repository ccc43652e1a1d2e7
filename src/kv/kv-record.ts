/**
 * A key's stored record: its metadata and value, as one LevelDB value. The metadata sits in a
 * fixed-size header so that applying a write can read it without touching the value, and reads
 * return the value as a view into the stored bytes (no copy; values may be several MiB).
 *
 * Layout (RECORD_FORMAT_VERSION 1), integers big-endian:
 *   u8 format version, u64 createRevision, u64 modRevision, u64 version, u64 lease (0 = none),
 *   then the value bytes to the end.
 */
import { asBuffer, ByteReader, ByteWriter, isU64, readU64, U64_BYTES } from '../util/bytes.js';
import { CorruptDataError } from './errors.js';

export const RECORD_FORMAT_VERSION = 1;

const HEADER_BYTES = 1 + 4 * U64_BYTES;

/** What the store tracks about a key besides its value. */
export interface KeyMeta {
  /** The revision that created the key (since it was last deleted). */
  readonly createRevision: number;
  /** The revision of the key's last change. */
  readonly modRevision: number;
  /** 1 when created, +1 on each put since. */
  readonly version: number;
  /** The lease the key is attached to, 0 for none. */
  readonly lease: number;
}

/** A key as reads return it. */
export interface KvRecord extends KeyMeta {
  readonly key: string;
  readonly value: Uint8Array;
}

/** The size of a key's stored form. */
export function recordBytes(value: Uint8Array): number {
  return HEADER_BYTES + value.byteLength;
}

/**
 * The stored form of a key (one copy of the value), in a new buffer or in `into`, which must be
 * recordBytes(value) long.
 */
export function encodeRecord(meta: KeyMeta, value: Uint8Array, into?: Buffer): Buffer {
  return new ByteWriter(recordBytes(value), into)
    .u8(RECORD_FORMAT_VERSION)
    .u64(meta.createRevision)
    .u64(meta.modRevision)
    .u64(meta.version)
    .u64(meta.lease)
    .bytes(value)
    .done();
}

/** The metadata of a stored record; `key` only names it in errors. */
export function decodeRecordMeta(key: string, stored: Uint8Array): KeyMeta {
  return readHeader(key, recordReader(key, stored));
}

/** A stored record as reads return it; the value is a view into `stored`. */
export function decodeRecord(key: string, stored: Uint8Array): KvRecord {
  // Every read decodes one, so the well-formed case reads the header in place; anything else
  // takes the reader below, which names the fault.
  const b = asBuffer(stored);
  if (b.length >= HEADER_BYTES && b[0] === RECORD_FORMAT_VERSION) {
    const createRevision = readU64(b, 1);
    const modRevision = readU64(b, 1 + U64_BYTES);
    const version = readU64(b, 1 + 2 * U64_BYTES);
    const lease = readU64(b, 1 + 3 * U64_BYTES);
    if (isU64(createRevision) && isU64(modRevision) && isU64(version) && isU64(lease) && createRevision >= 1 && modRevision >= createRevision && version >= 1) {
      return { key, value: b.subarray(HEADER_BYTES), createRevision, modRevision, version, lease };
    }
  }
  const r = recordReader(key, stored);
  const meta = readHeader(key, r);
  return { key, value: r.bytes(r.remaining, 'value'), ...meta };
}

function recordReader(key: string, stored: Uint8Array): ByteReader {
  return new ByteReader(stored, (reason) => corrupt(key, reason));
}

function readHeader(key: string, r: ByteReader): KeyMeta {
  const format = r.u8('format version');
  if (format !== RECORD_FORMAT_VERSION) throw corrupt(key, `format version ${format}`);
  const createRevision = r.u64('createRevision');
  const modRevision = r.u64('modRevision');
  const version = r.u64('version');
  const lease = r.u64('lease');
  if (createRevision < 1 || modRevision < createRevision || version < 1) {
    throw corrupt(key, `createRevision ${createRevision}, modRevision ${modRevision}, version ${version}`);
  }
  return { createRevision, modRevision, version, lease };
}

function corrupt(key: string, reason: string): CorruptDataError {
  return new CorruptDataError(`Stored record of key ${JSON.stringify(key)} is corrupt: ${reason}`);
}
