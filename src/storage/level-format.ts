/**
 * The binary encodings of what LevelStorage keeps in its `log` and `meta` sublevels. Each value
 * starts with a format byte (or, for log entries, a checksum) so a later version can change it;
 * integers are big-endian u64 (see util/bytes.ts).
 *
 *   log  key   u64 index (big-endian, so keys iterate in index order)
 *        value u32 crc32, u64 term, u8 type (0 normal, 1 config), data to the end;
 *              the CRC covers the key bytes, then the value after the CRC field, so an entry
 *              stored under the wrong index is caught as well as a flipped bit.
 *   meta 'hardState' u8 format, u64 term, u64 commit, u8 vote length (0 = no vote), vote UTF-8
 *        'snapshot'  u8 format, u64 index, u64 term, then voters and learners, each as
 *                    u16 count and that many (u8 length, UTF-8 name)
 *        'applied'   u8 format, u64 appliedIndex, u64 revision
 */
import type { ConfigState, Entry, EntryType, HardState, SnapshotMeta } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { ByteReader, ByteWriter, isU64, readU64, U64_BYTES } from '../util/bytes.js';
import { crc32 } from '../util/crc32.js';

/** Builds the error for a value that does not decode; the caller knows where it came from. */
export type Fail = (reason: string) => Error;

export const META_FORMAT_VERSION = 1;

export const HARD_STATE_KEY = 'hardState';
export const SNAPSHOT_KEY = 'snapshot';
export const APPLIED_KEY = 'applied';

/** Member names are at most 64 ASCII characters (config schema); the u8 length is the hard cap. */
const MAX_NAME_BYTES = 255;
/** A cluster configuration lists at most this many members of each kind (u16 count). */
const MAX_CONFIG_MEMBERS = 0xffff;

const CRC_BYTES = 4;
const ENTRY_HEADER_BYTES = CRC_BYTES + U64_BYTES + 1;
const ENTRY_TYPE_CODE: Record<EntryType, number> = { normal: 0, config: 1 };
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'config'];

// ---- log ----

export function logKey(index: number): Buffer {
  assert(isU64(index), `log index ${index} is not a u64`);
  return new ByteWriter(U64_BYTES).u64(index).done();
}

export function logKeyIndex(key: Buffer): number {
  return key.length === U64_BYTES ? readU64(key, 0) : -1;
}

/** One copy of the entry's data, into the stored value, plus its checksum. */
export function encodeLogEntry(entry: Entry): Buffer {
  const value = new ByteWriter(ENTRY_HEADER_BYTES + entry.data.byteLength)
    .u32(0)
    .u64(entry.term)
    .u8(ENTRY_TYPE_CODE[entry.type])
    .bytes(entry.data)
    .done();
  value.writeUInt32BE(entryChecksum(logKey(entry.index), value), 0);
  return value;
}

/** Checks the CRC and decodes; `data` is a view into `value`. */
export function decodeLogEntry(key: Buffer, value: Buffer, fail: Fail): Entry {
  const index = logKeyIndex(key);
  if (!isU64(index)) throw fail(`log key of ${key.length} bytes is not an index`);
  if (value.length < ENTRY_HEADER_BYTES) throw fail(`log entry ${index} is truncated (${value.length} bytes)`);
  if (value.readUInt32BE(0) !== entryChecksum(key, value)) throw fail(`log entry ${index} fails its checksum`);
  const r = new ByteReader(value.subarray(CRC_BYTES), (reason) => fail(`log entry ${index}: ${reason}`));
  const term = r.u64('term');
  const type = ENTRY_TYPES[r.u8('type')];
  if (type === undefined) throw fail(`log entry ${index} has an unknown type`);
  return { index, term, type, data: r.bytes(r.remaining, 'data') };
}

/** The term stored in a log entry's value, for checks that need no more (not CRC-checked). */
export function logEntryTerm(value: Buffer): number {
  return value.length < ENTRY_HEADER_BYTES ? -1 : readU64(value, CRC_BYTES);
}

function entryChecksum(key: Buffer, value: Buffer): number {
  return crc32(value.subarray(CRC_BYTES), crc32(key));
}

// ---- meta ----

export function encodeHardState(hardState: HardState): Buffer {
  const vote = hardState.vote ?? '';
  const voteBytes = nameBytes(vote);
  return new ByteWriter(1 + 2 * U64_BYTES + 1 + voteBytes)
    .u8(META_FORMAT_VERSION)
    .u64(hardState.term)
    .u64(hardState.commit)
    .u8(voteBytes)
    .utf8(vote, voteBytes)
    .done();
}

export function decodeHardState(value: Buffer, fail: Fail): HardState {
  const r = metaReader(value, fail);
  const term = r.u64('term');
  const commit = r.u64('commit');
  const vote = r.utf8(r.u8('vote length'), 'vote');
  r.end('hard state');
  return { term, vote: vote === '' ? null : vote, commit };
}

export function encodeSnapshotMeta(snapshot: SnapshotMeta): Buffer {
  const { voters, learners } = snapshot.config;
  assert(voters.length <= MAX_CONFIG_MEMBERS && learners.length <= MAX_CONFIG_MEMBERS, 'config too large');
  const voterBytes = voters.map(nameBytes);
  const learnerBytes = learners.map(nameBytes);
  const size = 1 + 2 * U64_BYTES + 2 + 2 + sum(voterBytes) + voters.length + sum(learnerBytes) + learners.length;
  const w = new ByteWriter(size).u8(META_FORMAT_VERSION).u64(snapshot.index).u64(snapshot.term);
  writeNames(w, voters, voterBytes);
  writeNames(w, learners, learnerBytes);
  return w.done();
}

export function decodeSnapshotMeta(value: Buffer, fail: Fail): SnapshotMeta {
  const r = metaReader(value, fail);
  const index = r.u64('index');
  const term = r.u64('term');
  const config: ConfigState = { voters: readNames(r, 'voter'), learners: readNames(r, 'learner') };
  r.end('snapshot');
  return { index, term, config };
}

export interface AppliedState {
  readonly appliedIndex: number;
  readonly revision: number;
}

export function encodeApplied(applied: AppliedState): Buffer {
  return new ByteWriter(1 + 2 * U64_BYTES)
    .u8(META_FORMAT_VERSION)
    .u64(applied.appliedIndex)
    .u64(applied.revision)
    .done();
}

export function decodeApplied(value: Buffer, fail: Fail): AppliedState {
  const r = metaReader(value, fail);
  const appliedIndex = r.u64('appliedIndex');
  const revision = r.u64('revision');
  r.end('applied state');
  return { appliedIndex, revision };
}

function metaReader(value: Buffer, fail: Fail): ByteReader {
  const r = new ByteReader(value, fail);
  const format = r.u8('format version');
  if (format !== META_FORMAT_VERSION) throw fail(`format version ${format}, expected ${META_FORMAT_VERSION}`);
  return r;
}

function nameBytes(name: string): number {
  const n = Buffer.byteLength(name, 'utf8');
  assert(n <= MAX_NAME_BYTES, `member name of ${n} bytes`);
  return n;
}

function writeNames(w: ByteWriter, names: readonly string[], bytes: readonly number[]): void {
  w.u16(names.length);
  for (let i = 0; i < names.length; i++) w.u8(bytes[i]).utf8(names[i], bytes[i]);
}

function readNames(r: ByteReader, what: string): string[] {
  const count = r.u16(`${what} count`);
  const names: string[] = [];
  for (let i = 0; i < count; i++) names.push(r.utf8(r.u8(`${what} name length`), `${what} name`));
  return names;
}

function sum(ns: readonly number[]): number {
  return ns.reduce((a, b) => a + b, 0);
}
