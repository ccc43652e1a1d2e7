/**
 * State-machine commands and their compact binary encoding: the `data` of a normal Raft entry.
 * Commands are encoded once by the member that proposes them and decoded on every member when the
 * entry is applied (and again after a restart), so the format is binary, copies each value once,
 * and starts with a version byte so later commands and fields slot in.
 *
 * Layout (FORMAT_VERSION 1), integers big-endian. Every command starts with
 *
 *   u8  format version (1)
 *   u8  op code (see OP_CODE)
 *   u8  flags (0 unless the op says otherwise)
 *   u8  requestId length R (at most MAX_REQUEST_ID_BYTES), then R bytes of UTF-8
 *
 * put (1) and delete (2); flags: bit 0 ifMatch present, bit 1 ifNoneMatch, bit 2 lease (put only)
 *   u16 key length K (1..MAX_KEY_BYTES), then K bytes of UTF-8
 *   u64 ifMatch            (when flag bit 0)
 *   u64 lease              (when flag bit 2)
 *   u32 value length V, then V bytes (put only)
 *
 * txn (3)
 *   u8 compare count, u8 success count, u8 failure count (each at most MAX_TXN_OPS)
 *   compare := u8 target (0 value, 1 modRevision, 2 createRevision, 3 version),
 *              u8 op (0 '=', 1 '!=', 2 '<', 3 '>'), u16 K, key,
 *              then for target value: u32 V, V bytes; for the others: u64
 *   op      := u8 kind (1 put, 2 delete, 3 get), u8 flags (bit 2 lease, put only), u16 K, key,
 *              then for put: [u64 lease], u32 V, V bytes
 *   (the compares, then the success ops, then the failure ops)
 *
 * leaseGrant (4): u64 id, u64 ttlSeconds
 * leaseRevoke (5): u64 id, u8 reason (0 revoke, 1 expire)
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
/** Largest value, in bytes. Also the most value bytes one txn may carry, compares included. */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024;
/** Longest requestId, in UTF-8 bytes. */
export const MAX_REQUEST_ID_BYTES = 64;
/** The most compares of a txn, and the most operations of each of its branches. */
export const MAX_TXN_OPS = 128;

/**
 * Op codes. 6 and 7 stay reserved (an expiry is a leaseRevoke with reason 'expire'; history is
 * compacted by retention, not by command); this version refuses them rather than skipping them,
 * because a member that skipped a command the others applied would silently diverge.
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

const RESERVED_OP_CODES: ReadonlySet<number> = new Set([OP_CODE.leaseExpire, OP_CODE.compact]);

const FLAG_IF_MATCH = 1 << 0;
const FLAG_IF_NONE_MATCH = 1 << 1;
const FLAG_LEASE = 1 << 2;
const PUT_FLAGS = FLAG_IF_MATCH | FLAG_IF_NONE_MATCH | FLAG_LEASE;
const DELETE_FLAGS = FLAG_IF_MATCH | FLAG_IF_NONE_MATCH;

/** Fixed part of every command: version, op, flags, requestId length. */
const HEADER_BYTES = 1 + 1 + 1 + 1;
const KEY_LENGTH_BYTES = 2;
const VALUE_LENGTH_BYTES = 4;

const COMPARE_TARGETS = ['value', 'modRevision', 'createRevision', 'version'] as const;
const COMPARE_OPS = ['=', '!=', '<', '>'] as const;
const TXN_OP_CODE = { put: 1, delete: 2, get: 3 } as const;
const REVOKE_REASONS = ['revoke', 'expire'] as const;

/** A JS string that is not valid Unicode (a lone surrogate) would not survive UTF-8. */
const LONE_SURROGATE = /\p{Cs}/u;

interface CommandBase {
  /**
   * Chosen by the member that proposed the command (opaque, at most MAX_REQUEST_ID_BYTES of UTF-8,
   * may be empty) so that it can settle the waiting client request when the command is applied.
   */
  readonly requestId: string;
}

interface KeyCommandBase extends CommandBase {
  /** Non-empty UTF-8; keys are ordered by their UTF-8 bytes. */
  readonly key: string;
  /** Apply only if the key exists with exactly this modRevision. */
  readonly ifMatch?: number;
  /** When true, apply only if the key is absent. */
  readonly ifNoneMatch?: boolean;
}

export interface PutCommand extends KeyCommandBase {
  readonly op: 'put';
  /** After decoding, a view into the entry's data (not a copy). */
  readonly value: Uint8Array;
  /** Attach the key to this lease (a positive id); without it the key has no lease. */
  readonly lease?: number;
}

export interface DeleteCommand extends KeyCommandBase {
  readonly op: 'delete';
}

export type CompareTarget = (typeof COMPARE_TARGETS)[number];
export type CompareOp = (typeof COMPARE_OPS)[number];

/**
 * One condition of a txn, on the state before it. `value` is bytes for target 'value' (compared
 * bytewise, like etcd) and a non-negative integer for the others. An absent key has modRevision,
 * createRevision and version 0; on its value every comparison is false except '!='.
 */
export interface Compare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly op: CompareOp;
  readonly value: Uint8Array | number;
}

export interface TxnPut {
  readonly op: 'put';
  readonly key: string;
  readonly value: Uint8Array;
  readonly lease?: number;
}

export interface TxnDelete {
  readonly op: 'delete';
  readonly key: string;
}

export interface TxnGet {
  readonly op: 'get';
  readonly key: string;
}

export type TxnOp = TxnPut | TxnDelete | TxnGet;

/**
 * etcd's transaction: if every compare holds, run `success`, else `failure`; all of it at one
 * revision, all or nothing. A branch may not write (put or delete) the same key twice.
 */
export interface TxnCommand extends CommandBase {
  readonly op: 'txn';
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure: readonly TxnOp[];
}

export interface LeaseGrantCommand extends CommandBase {
  readonly op: 'leaseGrant';
  /** Positive, at most 2^53 - 1, chosen by the proposer. */
  readonly id: number;
  /** Positive. Expiry is the leader's business: it proposes a leaseRevoke with reason 'expire'. */
  readonly ttlSeconds: number;
}

export type LeaseRevokeReason = (typeof REVOKE_REASONS)[number];

export interface LeaseRevokeCommand extends CommandBase {
  readonly op: 'leaseRevoke';
  readonly id: number;
  readonly reason: LeaseRevokeReason;
}

/** The commands that name one key and may carry If-Match / If-None-Match. */
export type KeyCommand = PutCommand | DeleteCommand;

export type Command = KeyCommand | TxnCommand | LeaseGrantCommand | LeaseRevokeCommand;

/**
 * Encodes a command as entry data. Throws InvalidArgumentError for an empty or ill-formed key or
 * requestId, a bad number, an oversized or ill-formed txn, KeyTooLargeError or ValueTooLargeError
 * beyond the MAX_* bounds.
 */
export function encodeCommand(command: Command): Buffer {
  // The type rules bad shapes out, but commands are built from parsed requests: fail clearly, not later.
  if (typeof command !== 'object' || command === null) throw new InvalidArgumentError('A command must be an object');
  switch (command.op) {
    case 'put':
    case 'delete':
      return encodeKeyCommand(command);
    case 'txn':
      return encodeTxn(command);
    case 'leaseGrant':
      return encodeLeaseGrant(command);
    case 'leaseRevoke':
      return encodeLeaseRevoke(command);
    default:
      throw new InvalidArgumentError(`Unknown command op ${JSON.stringify((command as { op: unknown }).op)}`);
  }
}

/**
 * Decodes entry data written by encodeCommand. The data comes from disk and from peers, so every
 * field is checked; anything malformed, truncated, from an unknown format version or with an
 * unknown or reserved op code throws CorruptDataError. Values are views into `data`.
 */
export function decodeCommand(data: Uint8Array): Command {
  const r = new ByteReader(data, (reason) => new CorruptDataError(`Invalid command: ${reason}`));
  const version = r.u8('format version');
  if (version !== FORMAT_VERSION) {
    throw new CorruptDataError(`Invalid command: format version ${version}, expected ${FORMAT_VERSION}`);
  }
  const op = decodeOp(r.u8('op code'));
  const flags = r.u8('flags');
  const allowed = op === 'put' ? PUT_FLAGS : op === 'delete' ? DELETE_FLAGS : 0;
  if ((flags & ~allowed) !== 0) throw corrupt(`flags 0x${flags.toString(16)} for ${op}`);
  const requestId = readRequestId(r);
  let command: Command;
  if (op === 'put' || op === 'delete') command = readKeyCommand(r, op, flags, requestId);
  else if (op === 'txn') command = readTxn(r, requestId);
  else if (op === 'leaseGrant') command = readLeaseGrant(r, requestId);
  else command = readLeaseRevoke(r, requestId);
  r.end(`${op} command`);
  return command;
}

// ---- put, delete ----

function encodeKeyCommand(command: KeyCommand): Buffer {
  const requestIdBytes = measureRequestId(command.requestId);
  const keyBytes = measureKey(command.key);
  const flags = commandFlags(command);
  let size = HEADER_BYTES + KEY_LENGTH_BYTES + requestIdBytes + keyBytes;
  if (flags & FLAG_IF_MATCH) size += U64_BYTES;
  if (flags & FLAG_LEASE) size += U64_BYTES;
  if (command.op === 'put') size += VALUE_LENGTH_BYTES + measureValue(command.value);

  const w = header(size, command, flags, requestIdBytes);
  w.u16(keyBytes).utf8(command.key, keyBytes);
  if (command.ifMatch !== undefined) w.u64(command.ifMatch);
  if (command.op === 'put') {
    if (command.lease !== undefined) w.u64(command.lease);
    w.u32(command.value.byteLength).bytes(command.value);
  }
  return w.done();
}

function readKeyCommand(r: ByteReader, op: 'put' | 'delete', flags: number, requestId: string): KeyCommand {
  const key = readKey(r);
  const preconditions = readPreconditions(r, flags);
  if (op === 'delete') return { op, requestId, key, ...preconditions };
  const lease = flags & FLAG_LEASE ? readLease(r) : undefined;
  const value = readValue(r);
  return lease === undefined
    ? { op, requestId, key, value, ...preconditions }
    : { op, requestId, key, value, lease, ...preconditions };
}

function header(size: number, command: Command, flags: number, requestIdBytes: number): ByteWriter {
  return new ByteWriter(size)
    .u8(FORMAT_VERSION)
    .u8(OP_CODE[command.op])
    .u8(flags)
    .u8(requestIdBytes)
    .utf8(command.requestId, requestIdBytes);
}

// ---- txn ----

const TXN_COUNTS_BYTES = 3;
const COMPARE_FIXED_BYTES = 1 + 1 + KEY_LENGTH_BYTES;
const TXN_OP_FIXED_BYTES = 1 + 1 + KEY_LENGTH_BYTES;

function encodeTxn(command: TxnCommand): Buffer {
  const requestIdBytes = measureRequestId(command.requestId);
  const compare = checkList(command.compare, 'compare');
  const success = checkList(command.success, 'success');
  const failure = checkList(command.failure, 'failure');
  const keyBytes = new Map<string, number>();
  const measure = (key: string): number => {
    let n = keyBytes.get(key);
    if (n === undefined) keyBytes.set(key, (n = measureKey(key)));
    return n;
  };
  let size = HEADER_BYTES + requestIdBytes + TXN_COUNTS_BYTES;
  let valueBytes = 0;
  for (const c of compare) {
    checkCompare(c);
    size += COMPARE_FIXED_BYTES + measure(c.key);
    if (c.target === 'value') {
      const n = measureValue(c.value as Uint8Array);
      size += VALUE_LENGTH_BYTES + n;
      valueBytes += n;
    } else size += U64_BYTES;
  }
  for (const [name, ops] of [['success', success], ['failure', failure]] as const) {
    const written = new Set<string>();
    for (const op of ops) {
      size += TXN_OP_FIXED_BYTES + measure(op.key);
      checkTxnOp(op, name, written);
      if (op.op !== 'put') continue;
      const n = measureValue(op.value);
      size += VALUE_LENGTH_BYTES + n + (op.lease === undefined ? 0 : U64_BYTES);
      valueBytes += n;
    }
  }
  if (valueBytes > MAX_VALUE_BYTES) {
    throw new ValueTooLargeError(`The txn carries ${valueBytes} bytes of values, at most ${MAX_VALUE_BYTES} are allowed`);
  }

  const w = header(size, command, 0, requestIdBytes).u8(compare.length).u8(success.length).u8(failure.length);
  for (const c of compare) {
    const n = keyBytes.get(c.key) ?? 0;
    w.u8(COMPARE_TARGETS.indexOf(c.target)).u8(COMPARE_OPS.indexOf(c.op)).u16(n).utf8(c.key, n);
    if (c.target === 'value') w.u32((c.value as Uint8Array).byteLength).bytes(c.value as Uint8Array);
    else w.u64(c.value as number);
  }
  for (const op of [...success, ...failure]) {
    const n = keyBytes.get(op.key) ?? 0;
    const lease = op.op === 'put' ? op.lease : undefined;
    w.u8(TXN_OP_CODE[op.op]).u8(lease === undefined ? 0 : FLAG_LEASE).u16(n).utf8(op.key, n);
    if (op.op !== 'put') continue;
    if (lease !== undefined) w.u64(lease);
    w.u32(op.value.byteLength).bytes(op.value);
  }
  return w.done();
}

function checkList<T>(list: readonly T[], name: string): readonly T[] {
  if (!Array.isArray(list)) throw new InvalidArgumentError(`txn ${name} must be an array`);
  if (list.some((item) => typeof item !== 'object' || item === null)) {
    throw new InvalidArgumentError(`txn ${name} must hold objects`);
  }
  if (list.length > MAX_TXN_OPS) {
    throw new InvalidArgumentError(`txn ${name} has ${list.length} entries, at most ${MAX_TXN_OPS} are allowed`);
  }
  return list;
}

function checkCompare(c: Compare): void {
  if (!COMPARE_TARGETS.includes(c.target)) throw new InvalidArgumentError(`Unknown compare target ${JSON.stringify(c.target)}`);
  if (!COMPARE_OPS.includes(c.op)) throw new InvalidArgumentError(`Unknown compare op ${JSON.stringify(c.op)}`);
  if (c.target === 'value') return; // measureValue checked the bytes
  if (typeof c.value !== 'number' || !isU64(c.value)) {
    throw new InvalidArgumentError(`A compare on ${c.target} needs a non-negative integer, got ${String(c.value)}`);
  }
}

function checkTxnOp(op: TxnOp, branch: string, written: Set<string>): void {
  if (op.op !== 'put' && op.op !== 'delete' && op.op !== 'get') {
    throw new InvalidArgumentError(`Unknown txn op ${JSON.stringify((op as { op: unknown }).op)}`);
  }
  if (op.op === 'get') return;
  if (written.has(op.key)) {
    throw new InvalidArgumentError(`The txn ${branch} branch writes ${JSON.stringify(op.key)} more than once`);
  }
  written.add(op.key);
  if (op.op === 'put' && op.lease !== undefined) checkLeaseId(op.lease, 'lease');
}

function readTxn(r: ByteReader, requestId: string): TxnCommand {
  const counts = [r.u8('compare count'), r.u8('success count'), r.u8('failure count')];
  if (counts.some((n) => n > MAX_TXN_OPS)) throw corrupt(`txn counts ${counts.join('/')}`);
  const budget = { valueBytes: 0 };
  const compare: Compare[] = [];
  for (let i = 0; i < counts[0]; i++) compare.push(readCompare(r, budget));
  const success = readBranch(r, counts[1], 'success', budget);
  const failure = readBranch(r, counts[2], 'failure', budget);
  return { op: 'txn', requestId, compare, success, failure };
}

function readCompare(r: ByteReader, budget: { valueBytes: number }): Compare {
  const target = COMPARE_TARGETS[r.u8('compare target')];
  const op = COMPARE_OPS[r.u8('compare op')];
  if (target === undefined || op === undefined) throw corrupt('unknown compare target or op');
  const key = readKey(r);
  if (target !== 'value') return { key, target, op, value: r.u64('compare value') };
  const value = readValue(r);
  spend(budget, value.byteLength);
  return { key, target, op, value };
}

function readBranch(r: ByteReader, count: number, branch: string, budget: { valueBytes: number }): TxnOp[] {
  const ops: TxnOp[] = [];
  const written = new Set<string>();
  for (let i = 0; i < count; i++) {
    const code = r.u8('txn op');
    const flags = r.u8('txn op flags');
    if ((flags & ~(code === TXN_OP_CODE.put ? FLAG_LEASE : 0)) !== 0) throw corrupt(`txn op flags 0x${flags.toString(16)}`);
    const key = readKey(r);
    if (code === TXN_OP_CODE.get) {
      ops.push({ op: 'get', key });
      continue;
    }
    if (code !== TXN_OP_CODE.put && code !== TXN_OP_CODE.delete) throw corrupt(`unknown txn op ${code}`);
    if (written.has(key)) throw corrupt(`txn ${branch} branch writes ${JSON.stringify(key)} twice`);
    written.add(key);
    if (code === TXN_OP_CODE.delete) {
      ops.push({ op: 'delete', key });
      continue;
    }
    const lease = flags & FLAG_LEASE ? readLease(r) : undefined;
    const value = readValue(r);
    spend(budget, value.byteLength);
    ops.push(lease === undefined ? { op: 'put', key, value } : { op: 'put', key, value, lease });
  }
  return ops;
}

function spend(budget: { valueBytes: number }, n: number): void {
  budget.valueBytes += n;
  if (budget.valueBytes > MAX_VALUE_BYTES) throw corrupt(`txn carries more than ${MAX_VALUE_BYTES} bytes of values`);
}

// ---- leases ----

function encodeLeaseGrant(command: LeaseGrantCommand): Buffer {
  const requestIdBytes = measureRequestId(command.requestId);
  checkLeaseId(command.id, 'lease id');
  if (!isU64(command.ttlSeconds) || command.ttlSeconds === 0) {
    throw new InvalidArgumentError(`ttlSeconds must be a positive integer, got ${command.ttlSeconds}`);
  }
  const size = HEADER_BYTES + requestIdBytes + 2 * U64_BYTES;
  return header(size, command, 0, requestIdBytes).u64(command.id).u64(command.ttlSeconds).done();
}

function readLeaseGrant(r: ByteReader, requestId: string): LeaseGrantCommand {
  const id = readLease(r);
  const ttlSeconds = r.u64('ttlSeconds');
  if (ttlSeconds === 0) throw corrupt('ttlSeconds 0');
  return { op: 'leaseGrant', requestId, id, ttlSeconds };
}

function encodeLeaseRevoke(command: LeaseRevokeCommand): Buffer {
  const requestIdBytes = measureRequestId(command.requestId);
  checkLeaseId(command.id, 'lease id');
  const reason = REVOKE_REASONS.indexOf(command.reason);
  if (reason < 0) throw new InvalidArgumentError(`Unknown revoke reason ${JSON.stringify(command.reason)}`);
  const size = HEADER_BYTES + requestIdBytes + U64_BYTES + 1;
  return header(size, command, 0, requestIdBytes).u64(command.id).u8(reason).done();
}

function readLeaseRevoke(r: ByteReader, requestId: string): LeaseRevokeCommand {
  const id = readLease(r);
  const reason = REVOKE_REASONS[r.u8('revoke reason')];
  if (reason === undefined) throw corrupt('unknown revoke reason');
  return { op: 'leaseRevoke', requestId, id, reason };
}

function checkLeaseId(id: number, what: string): void {
  if (!isU64(id) || id === 0) throw new InvalidArgumentError(`${what} must be a positive integer, got ${id}`);
}

// ---- shared fields ----

function commandFlags(command: KeyCommand): number {
  let flags = 0;
  if (command.ifMatch !== undefined) {
    if (!isU64(command.ifMatch)) {
      throw new InvalidArgumentError(`ifMatch must be a non-negative integer, got ${command.ifMatch}`);
    }
    flags |= FLAG_IF_MATCH;
  }
  if (command.ifNoneMatch === true) flags |= FLAG_IF_NONE_MATCH;
  if (command.op === 'put' && command.lease !== undefined) {
    checkLeaseId(command.lease, 'lease');
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
  if (typeof key !== 'string') throw new InvalidArgumentError('The key must be a string');
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
  if (code === OP_CODE.txn) return 'txn';
  if (code === OP_CODE.leaseGrant) return 'leaseGrant';
  if (code === OP_CODE.leaseRevoke) return 'leaseRevoke';
  if (RESERVED_OP_CODES.has(code)) throw corrupt(`op code ${code} is reserved for a later version`);
  throw corrupt(`unknown op code ${code}`);
}

function corrupt(reason: string): CorruptDataError {
  return new CorruptDataError(`Invalid command: ${reason}`);
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
  if (lease === 0) throw corrupt('lease 0');
  return lease;
}

function readValue(r: ByteReader): Buffer {
  const n = r.u32('value length');
  if (n > MAX_VALUE_BYTES) throw corrupt(`value of ${n} bytes`);
  return r.bytes(n, 'value');
}
