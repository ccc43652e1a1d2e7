/**
 * State-machine commands and their compact binary encoding: the `data` of a normal Raft entry.
 * Commands are encoded once by the member that proposes them and decoded on every member when the
 * entry is applied (and again after a restart), so the format is binary, copies the value once,
 * and starts with a version byte so later commands and fields slot in.
 *
 * Layout (FORMAT_VERSION 1), integers big-endian:
 *
 *   u8  format version (1)
 *   u8  op code (see OP_CODE)
 *   u8  flags: bit 0 ifMatch present, bit 1 ifNoneMatch, bit 2 lease present (put only)
 *   u8  requestId length R (at most MAX_REQUEST_ID_BYTES), then R bytes of UTF-8
 *   u16 key length K (1..MAX_KEY_BYTES), then K bytes of UTF-8
 *   u64 ifMatch            (when flag bit 0)
 *   u64 lease              (when flag bit 2)
 *   u32 value length V, then V bytes (put only)
 *
 * Nothing may follow; decoding rejects trailing bytes.
 */
import { ByteReader, ByteWriter, isU64, U64_BYTES } from '../util/bytes.js';
import { CorruptDataError, InvalidArgumentError, KeyTooLargeError, ValueTooLargeError } from './errors.js';

export const FORMAT_VERSION = 1;

/**
 * Longest key, in UTF-8 bytes: what the u16 length field holds. These MAX_* bounds are what the
 * format can carry; the member's configured limits (--max-key-bytes, --max-value-bytes) are
 * checked by the API first and must not exceed them.
 */
export const MAX_KEY_BYTES = 0xffff;
/** Largest value, in bytes. */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024;
/** Longest requestId, in UTF-8 bytes. */
export const MAX_REQUEST_ID_BYTES = 64;

/**
 * Op codes. 3..7 are reserved for commands a later version adds (txn, leases, compaction); this
 * version refuses them rather than skipping them, because a member that skipped a command the
 * others applied would silently diverge.
 */
const OP_CODE = {
  put: 1,
  delete: 2,
  txn: 3,
  leaseGrant: 4,
  leaseRevoke: 5,
  leaseExpire: 6,
  compact: 7,
} as const;

const RESERVED_OP_CODES: ReadonlySet<number> = new Set([
  OP_CODE.txn,
  OP_CODE.leaseGrant,
  OP_CODE.leaseRevoke,
  OP_CODE.leaseExpire,
  OP_CODE.compact,
]);

const FLAG_IF_MATCH = 1 << 0;
const FLAG_IF_NONE_MATCH = 1 << 1;
const FLAG_LEASE = 1 << 2;
const PUT_FLAGS = FLAG_IF_MATCH | FLAG_IF_NONE_MATCH | FLAG_LEASE;
const DELETE_FLAGS = FLAG_IF_MATCH | FLAG_IF_NONE_MATCH;

/** Fixed part: version, op, flags, requestId length, key length. */
const FIXED_BYTES = 1 + 1 + 1 + 1 + 2;
const VALUE_LENGTH_BYTES = 4;

/** A JS string that is not valid Unicode (a lone surrogate) would not survive UTF-8. */
const LONE_SURROGATE = /\p{Cs}/u;

interface CommandBase {
  /**
   * Chosen by the member that proposed the command (opaque, at most MAX_REQUEST_ID_BYTES of UTF-8,
   * may be empty) so that it can settle the waiting client request when the command is applied.
   */
  readonly requestId: string;
  /** Non-empty UTF-8; keys are ordered by their UTF-8 bytes. */
  readonly key: string;
  /** Apply only if the key exists with exactly this modRevision. */
  readonly ifMatch?: number;
  /** When true, apply only if the key is absent. */
  readonly ifNoneMatch?: boolean;
}

export interface PutCommand extends CommandBase {
  readonly op: 'put';
  /** After decoding, a view into the entry's data (not a copy). */
  readonly value: Uint8Array;
  /** Attach the key to this lease (a positive id); without it the key has no lease. */
  readonly lease?: number;
}

export interface DeleteCommand extends CommandBase {
  readonly op: 'delete';
}

export type Command = PutCommand | DeleteCommand;

/**
 * Encodes a command as entry data. Throws InvalidArgumentError for an empty or ill-formed key or
 * requestId or a bad number, KeyTooLargeError or ValueTooLargeError beyond the MAX_* bounds.
 */
export function encodeCommand(command: Command): Buffer {
  // The type rules this out, but commands are built from parsed requests: fail clearly, not later.
  if (command.op !== 'put' && command.op !== 'delete') {
    throw new InvalidArgumentError(`Unknown command op ${JSON.stringify((command as { op: unknown }).op)}`);
  }
  const requestIdBytes = measureRequestId(command.requestId);
  const keyBytes = measureKey(command.key);
  const flags = commandFlags(command);
  let size = FIXED_BYTES + requestIdBytes + keyBytes;
  if (flags & FLAG_IF_MATCH) size += U64_BYTES;
  if (flags & FLAG_LEASE) size += U64_BYTES;
  if (command.op === 'put') size += VALUE_LENGTH_BYTES + measureValue(command.value);

  const w = new ByteWriter(size).u8(FORMAT_VERSION).u8(OP_CODE[command.op]).u8(flags);
  w.u8(requestIdBytes).utf8(command.requestId, requestIdBytes);
  w.u16(keyBytes).utf8(command.key, keyBytes);
  if (command.ifMatch !== undefined) w.u64(command.ifMatch);
  if (command.op === 'put') {
    if (command.lease !== undefined) w.u64(command.lease);
    w.u32(command.value.byteLength).bytes(command.value);
  }
  return w.done();
}

/**
 * Decodes entry data written by encodeCommand. The data comes from disk and from peers, so every
 * field is checked; anything malformed, truncated, from an unknown format version or with an
 * unknown or reserved op code throws CorruptDataError. A put's value is a view into `data`.
 */
export function decodeCommand(data: Uint8Array): Command {
  const r = new ByteReader(data, (reason) => new CorruptDataError(`Invalid command: ${reason}`));
  const version = r.u8('format version');
  if (version !== FORMAT_VERSION) {
    throw new CorruptDataError(`Invalid command: format version ${version}, expected ${FORMAT_VERSION}`);
  }
  const op = decodeOp(r.u8('op code'));
  const flags = r.u8('flags');
  const allowed = op === 'put' ? PUT_FLAGS : DELETE_FLAGS;
  if ((flags & ~allowed) !== 0) throw new CorruptDataError(`Invalid command: flags 0x${flags.toString(16)} for ${op}`);
  const requestId = readRequestId(r);
  const key = readKey(r);
  const preconditions = readPreconditions(r, flags);
  if (op === 'delete') {
    r.end('delete command');
    return { op, requestId, key, ...preconditions };
  }
  const lease = flags & FLAG_LEASE ? readLease(r) : undefined;
  const valueBytes = r.u32('value length');
  if (valueBytes > MAX_VALUE_BYTES) throw new CorruptDataError(`Invalid command: value of ${valueBytes} bytes`);
  const value = r.bytes(valueBytes, 'value');
  r.end('put command');
  return lease === undefined
    ? { op, requestId, key, value, ...preconditions }
    : { op, requestId, key, value, lease, ...preconditions };
}

function commandFlags(command: Command): number {
  let flags = 0;
  if (command.ifMatch !== undefined) {
    if (!isU64(command.ifMatch)) {
      throw new InvalidArgumentError(`ifMatch must be a non-negative integer, got ${command.ifMatch}`);
    }
    flags |= FLAG_IF_MATCH;
  }
  if (command.ifNoneMatch === true) flags |= FLAG_IF_NONE_MATCH;
  if (command.op === 'put' && command.lease !== undefined) {
    if (!isU64(command.lease) || command.lease === 0) {
      throw new InvalidArgumentError(`lease must be a positive integer, got ${command.lease}`);
    }
    flags |= FLAG_LEASE;
  }
  return flags;
}

function measureRequestId(requestId: string): number {
  const n = Buffer.byteLength(requestId, 'utf8');
  if (n > MAX_REQUEST_ID_BYTES || LONE_SURROGATE.test(requestId)) {
    throw new InvalidArgumentError(`requestId must be valid Unicode of at most ${MAX_REQUEST_ID_BYTES} bytes`);
  }
  return n;
}

/**
 * Checks that key can be stored: non-empty, valid Unicode, at most MAX_KEY_BYTES of UTF-8.
 * Throws InvalidArgumentError or KeyTooLargeError.
 */
export function validateKey(key: string): void {
  measureKey(key);
}

function measureKey(key: string): number {
  if (key.length === 0) throw new InvalidArgumentError('The key must not be empty');
  if (LONE_SURROGATE.test(key)) throw new InvalidArgumentError('The key is not valid Unicode (lone surrogate)');
  const n = Buffer.byteLength(key, 'utf8');
  if (n > MAX_KEY_BYTES) throw new KeyTooLargeError(`The key is ${n} bytes, at most ${MAX_KEY_BYTES} are allowed`);
  return n;
}

function measureValue(value: Uint8Array): number {
  if (!(value instanceof Uint8Array)) throw new InvalidArgumentError('The value must be a Uint8Array');
  if (value.byteLength > MAX_VALUE_BYTES) {
    throw new ValueTooLargeError(`The value is ${value.byteLength} bytes, at most ${MAX_VALUE_BYTES} are allowed`);
  }
  return value.byteLength;
}

function decodeOp(code: number): Command['op'] {
  if (code === OP_CODE.put) return 'put';
  if (code === OP_CODE.delete) return 'delete';
  if (RESERVED_OP_CODES.has(code)) {
    throw new CorruptDataError(`Invalid command: op code ${code} is reserved for a later version`);
  }
  throw new CorruptDataError(`Invalid command: unknown op code ${code}`);
}

function readRequestId(r: ByteReader): string {
  const n = r.u8('requestId length');
  if (n > MAX_REQUEST_ID_BYTES) throw new CorruptDataError(`Invalid command: requestId of ${n} bytes`);
  return r.utf8(n, 'requestId');
}

function readKey(r: ByteReader): string {
  const n = r.u16('key length');
  if (n === 0 || n > MAX_KEY_BYTES) throw new CorruptDataError(`Invalid command: key of ${n} bytes`);
  return r.utf8(n, 'key');
}

function readPreconditions(r: ByteReader, flags: number): { ifMatch?: number; ifNoneMatch?: boolean } {
  const ifMatch = flags & FLAG_IF_MATCH ? r.u64('ifMatch') : undefined;
  const ifNoneMatch = (flags & FLAG_IF_NONE_MATCH) !== 0;
  if (ifMatch === undefined) return ifNoneMatch ? { ifNoneMatch } : {};
  return ifNoneMatch ? { ifMatch, ifNoneMatch } : { ifMatch };
}

function readLease(r: ByteReader): number {
  const lease = r.u64('lease');
  if (lease === 0) throw new CorruptDataError('Invalid command: lease 0');
  return lease;
}
