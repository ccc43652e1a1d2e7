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
 *        'snapshot'  u8 format (2), u64 index, u64 term, then voters and learners, each as
 *                    u16 count and that many (u8 length, UTF-8 name), then the peer URLs as
 *                    u16 count and that many (u8 name length, name, u16 URL length, URL)
 *                    (format 1 ends after the learners: no peer URLs)
 *        'applied'   u8 format (2), u64 appliedIndex, u64 revision, u64 compactRevision
 *                    (format 1, without compactRevision, is read as "no history before revision")
 *        'generation' u8 format, u64 generation: which set of state-machine sublevels is live
 *                    (absent = 0; see stateSublevelName)
 *        'installing' u8 format, u64 generation being filled from an image, u8 1 if it is a
 *                    restore into an empty directory (0 for an install over existing state)
 *        'retired'   u8 format, u64 generation whose sublevels are being cleared
 *   leases      key   u64 lease id
 *               value u8 format, u64 ttlSeconds
 *   lease-keys  key   u64 lease id, then the UTF-8 bytes of a key attached to it
 *               value empty
 *   history     key   u64 revision
 *               value u8 format, u32 event count, then per event: u8 type (0 put, 1 delete),
 *                     u16 key length, key UTF-8, u64 createRevision, u64 version, u64 lease,
 *                     u32 value length, value (every event's modRevision is the key's revision)
 */
import type { LeaseRecord, WatchEvent } from '../kv/kv-state.js';
import type { ConfigState, Entry, EntryType, HardState, SnapshotMeta } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { ByteReader, ByteWriter, isU64, readU64, U64_BYTES } from '../util/bytes.js';
import { crc32 } from './crc32.js';

/** Builds the error for a value that does not decode; the caller knows where it came from. */
export type Fail = (reason: string) => Error;

export const META_FORMAT_VERSION = 1;

export const HARD_STATE_KEY = 'hardState';
export const SNAPSHOT_KEY = 'snapshot';
export const APPLIED_KEY = 'applied';
export const GENERATION_KEY = 'generation';
export const INSTALLING_KEY = 'installing';
export const RETIRED_KEY = 'retired';

/** Member names are at most 64 ASCII characters (config schema); the u8 length is the hard cap. */
const MAX_NAME_BYTES = 255;
/** A peer URL's u16 length field. */
const MAX_URL_BYTES = 0xffff;
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

/** Format 2 added the peer URLs. */
const SNAPSHOT_FORMAT_VERSION = 2;

export function encodeSnapshotMeta(snapshot: SnapshotMeta): Buffer {
  const config = encodeConfig(snapshot.config);
  return new ByteWriter(1 + 2 * U64_BYTES + config.length)
    .u8(SNAPSHOT_FORMAT_VERSION)
    .u64(snapshot.index)
    .u64(snapshot.term)
    .bytes(config)
    .done();
}

export function decodeSnapshotMeta(value: Buffer, fail: Fail): SnapshotMeta {
  const r = new ByteReader(value, fail);
  const format = r.u8('format version');
  if (format !== META_FORMAT_VERSION && format !== SNAPSHOT_FORMAT_VERSION) {
    throw fail(`format version ${format}, expected ${SNAPSHOT_FORMAT_VERSION}`);
  }
  const index = r.u64('index');
  const term = r.u64('term');
  const config = readConfig(r, format === SNAPSHOT_FORMAT_VERSION);
  r.end('snapshot');
  return { index, term, config };
}

/**
 * A configuration: voters and learners (each u16 count, then u8 length and UTF-8 name), then the
 * peer URLs (u16 count, then u8 name length, name, u16 URL length, URL; in name order, so equal
 * configurations encode to equal bytes). Shared by the snapshot meta and snapshot images.
 */
export function encodeConfig(config: ConfigState): Buffer {
  const { voters, learners } = config;
  const urls = Object.entries(config.peerUrls ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  assert(
    voters.length <= MAX_CONFIG_MEMBERS && learners.length <= MAX_CONFIG_MEMBERS && urls.length <= MAX_CONFIG_MEMBERS,
    'config too large',
  );
  const voterBytes = voters.map(nameBytes);
  const learnerBytes = learners.map(nameBytes);
  const urlNameBytes = urls.map(([name]) => nameBytes(name));
  const urlBytes = urls.map(([, url]) => Buffer.byteLength(url, 'utf8'));
  for (const n of urlBytes) assert(n <= MAX_URL_BYTES, `peer URL of ${n} bytes`);
  const namesSize = 2 + sum(voterBytes) + voters.length + 2 + sum(learnerBytes) + learners.length;
  const urlsSize = 2 + sum(urlNameBytes) + urls.length + sum(urlBytes) + 2 * urls.length;
  const size = namesSize + urlsSize;
  const w = new ByteWriter(size);
  writeNames(w, voters, voterBytes);
  writeNames(w, learners, learnerBytes);
  w.u16(urls.length);
  for (let i = 0; i < urls.length; i++) {
    w.u8(urlNameBytes[i]).utf8(urls[i][0], urlNameBytes[i]);
    w.u16(urlBytes[i]).utf8(urls[i][1], urlBytes[i]);
  }
  return w.done();
}

/** Reads what encodeConfig wrote (without the peer URLs when `withUrls` is false: snapshot format 1). */
export function readConfig(r: ByteReader, withUrls = true): ConfigState {
  const voters = readNames(r, 'voter');
  const learners = readNames(r, 'learner');
  const count = withUrls ? r.u16('peer URL count') : 0;
  if (count === 0) return { voters, learners };
  const peerUrls: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const name = r.utf8(r.u8('peer URL name length'), 'peer URL name');
    peerUrls[name] = r.utf8(r.u16('peer URL length'), 'peer URL');
  }
  return { voters, learners, peerUrls };
}

export interface AppliedState {
  readonly appliedIndex: number;
  readonly revision: number;
  /** The highest revision whose watch history is no longer kept (0 while none was dropped). */
  readonly compactRevision: number;
}

/** Format 2 added compactRevision. */
const APPLIED_FORMAT_VERSION = 2;

export function encodeApplied(applied: AppliedState): Buffer {
  assert(applied.compactRevision <= applied.revision, `compactRevision ${applied.compactRevision} > revision`);
  return new ByteWriter(1 + 3 * U64_BYTES)
    .u8(APPLIED_FORMAT_VERSION)
    .u64(applied.appliedIndex)
    .u64(applied.revision)
    .u64(applied.compactRevision)
    .done();
}

/**
 * A format-1 record predates the watch history: none of the revisions it counted has history,
 * so it reads as compacted up to its revision.
 */
export function decodeApplied(value: Buffer, fail: Fail): AppliedState {
  const r = new ByteReader(value, fail);
  const format = r.u8('format version');
  if (format !== META_FORMAT_VERSION && format !== APPLIED_FORMAT_VERSION) {
    throw fail(`format version ${format}, expected ${APPLIED_FORMAT_VERSION}`);
  }
  const appliedIndex = r.u64('appliedIndex');
  const revision = r.u64('revision');
  const compactRevision = format === APPLIED_FORMAT_VERSION ? r.u64('compactRevision') : revision;
  r.end('applied state');
  if (compactRevision > revision) throw fail(`compactRevision ${compactRevision} is past revision ${revision}`);
  return { appliedIndex, revision, compactRevision };
}

// ---- state-machine generations ----

/** The sublevels that make up the key-value state machine (everything but `log` and `meta`). */
export type StateSublevel = 'kv' | 'leases' | 'lease-keys' | 'history';

/**
 * The sublevel name of one part of the state machine in a generation. Generation 0 (every store
 * that never installed an image) uses the plain names; installing an image fills generation g + 1
 * beside the live one and switches to it in one batch (see LevelStorage.installImage).
 */
export function stateSublevelName(part: StateSublevel, generation: number): string {
  assert(isU64(generation), `generation ${generation} is not a u64`);
  return generation === 0 ? part : `${part}-g${generation}`;
}

const GENERATION_FORMAT_VERSION = 1;

export function encodeGeneration(generation: number): Buffer {
  return new ByteWriter(1 + U64_BYTES).u8(GENERATION_FORMAT_VERSION).u64(generation).done();
}

export function decodeGeneration(value: Buffer, fail: Fail): number {
  const r = new ByteReader(value, fail);
  const format = r.u8('format version');
  if (format !== GENERATION_FORMAT_VERSION) throw fail(`format version ${format}, expected ${GENERATION_FORMAT_VERSION}`);
  const generation = r.u64('generation');
  r.end('generation');
  return generation;
}

/** The 'installing' marker: which generation is being filled, and whether by a restore. */
export interface InstallingMarker {
  readonly generation: number;
  /** True for `snapshot restore` into an empty directory (no Raft state before it). */
  readonly restore: boolean;
}

export function encodeInstalling(marker: InstallingMarker): Buffer {
  return new ByteWriter(1 + U64_BYTES + 1)
    .u8(GENERATION_FORMAT_VERSION)
    .u64(marker.generation)
    .u8(marker.restore ? 1 : 0)
    .done();
}

export function decodeInstalling(value: Buffer, fail: Fail): InstallingMarker {
  const r = new ByteReader(value, fail);
  const format = r.u8('format version');
  if (format !== GENERATION_FORMAT_VERSION) throw fail(`format version ${format}, expected ${GENERATION_FORMAT_VERSION}`);
  const generation = r.u64('generation');
  const restore = r.u8('restore flag');
  r.end('installing marker');
  if (restore > 1) throw fail(`restore flag ${restore}`);
  return { generation, restore: restore === 1 };
}

// ---- leases ----

export const LEASE_FORMAT_VERSION = 1;

export function leaseKey(id: number): Buffer {
  assert(isU64(id) && id > 0, `lease id ${id} is not a positive u64`);
  return new ByteWriter(U64_BYTES).u64(id).done();
}

export function leaseKeyId(key: Buffer, fail: Fail): number {
  const id = key.length === U64_BYTES ? readU64(key, 0) : -1;
  if (!isU64(id) || id === 0) throw fail(`lease key of ${key.length} bytes is not a lease id`);
  return id;
}

export function encodeLease(lease: LeaseRecord): Buffer {
  return new ByteWriter(1 + U64_BYTES).u8(LEASE_FORMAT_VERSION).u64(lease.ttlSeconds).done();
}

export function decodeLease(value: Buffer, fail: Fail): LeaseRecord {
  const r = new ByteReader(value, fail);
  const format = r.u8('format version');
  if (format !== LEASE_FORMAT_VERSION) throw fail(`format version ${format}, expected ${LEASE_FORMAT_VERSION}`);
  const ttlSeconds = r.u64('ttlSeconds');
  r.end('lease');
  return { ttlSeconds };
}

/** The lease index: lease id, then the key's UTF-8, so one lease's keys are one range. */
export function leaseKeysKey(id: number, key: string): Buffer {
  const keyBytes = Buffer.byteLength(key, 'utf8');
  return new ByteWriter(U64_BYTES + keyBytes).u64(id).utf8(key, keyBytes).done();
}

/** The range of the lease index holding one lease's keys: [id, id + 1) as 8-byte prefixes. */
export function leaseKeysRange(id: number): { gte: Buffer; lt: Buffer } {
  const gte = leaseKey(id);
  // id + 1 may be 2^53, which a JS number does not hold exactly: add one to the bytes instead.
  const lt = Buffer.from(gte);
  let i = lt.length - 1;
  while (lt[i] === 0xff) lt[i--] = 0;
  lt[i]++; // id < 2^53, so some byte is below 0xff
  return { gte, lt };
}

/** The key part of a lease index key. */
export function leaseKeysKeyName(indexKey: Buffer, fail: Fail): string {
  const r = new ByteReader(indexKey, fail);
  r.u64('lease id');
  if (r.remaining === 0) throw fail('lease index key without a key');
  return r.utf8(r.remaining, 'key');
}

// ---- history ----

export const HISTORY_FORMAT_VERSION = 1;
const EVENT_TYPES = ['put', 'delete'] as const;
const EVENT_FIXED_BYTES = 1 + 2 + 3 * U64_BYTES + 4;

export function historyKey(revision: number): Buffer {
  assert(isU64(revision) && revision > 0, `revision ${revision} is not a positive u64`);
  return new ByteWriter(U64_BYTES).u64(revision).done();
}

export function historyKeyRevision(key: Buffer, fail: Fail): number {
  const revision = key.length === U64_BYTES ? readU64(key, 0) : -1;
  if (!isU64(revision) || revision === 0) throw fail(`history key of ${key.length} bytes is not a revision`);
  return revision;
}

/**
 * The events of one revision, values included (one copy of each), in a new buffer or in `into`,
 * which must be eventsBytes(events) long.
 */
export function encodeEvents(events: readonly WatchEvent[], into?: Buffer): Buffer {
  const keyBytes = events.map((e) => Buffer.byteLength(e.key, 'utf8'));
  const w = new ByteWriter(eventsSize(events, keyBytes), into).u8(HISTORY_FORMAT_VERSION).u32(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    w.u8(e.type === 'put' ? 0 : 1).u16(keyBytes[i]).utf8(e.key, keyBytes[i]);
    w.u64(e.createRevision).u64(e.version).u64(e.lease).u32(e.value.byteLength).bytes(e.value);
  }
  return w.done();
}

/** The size of the stored form of a revision's events (encodeEvents writes into a buffer this long). */
export function eventsBytes(events: readonly WatchEvent[]): number {
  return eventsSize(events, events.map((e) => Buffer.byteLength(e.key, 'utf8')));
}

function eventsSize(events: readonly WatchEvent[], keyBytes: readonly number[]): number {
  let size = 1 + 4;
  for (let i = 0; i < events.length; i++) size += EVENT_FIXED_BYTES + keyBytes[i] + events[i].value.byteLength;
  return size;
}

/**
 * Decodes the events stored for `revision`, keeping those whose key bytes `match` accepts (all
 * when it is omitted); keys of other events are never decoded. Values are views into `value`.
 */
export function decodeEvents(value: Buffer, revision: number, fail: Fail, match?: (key: Buffer) => boolean): WatchEvent[] {
  const r = new ByteReader(value, fail);
  const format = r.u8('format version');
  if (format !== HISTORY_FORMAT_VERSION) throw fail(`format version ${format}, expected ${HISTORY_FORMAT_VERSION}`);
  const count = r.u32('event count');
  if (count === 0) throw fail(`revision ${revision} has no events`);
  const events: WatchEvent[] = [];
  for (let i = 0; i < count; i++) {
    const type = EVENT_TYPES[r.u8('event type')];
    if (type === undefined) throw fail('unknown event type');
    const keyBytes = r.bytes(r.u16('key length'), 'key');
    const createRevision = r.u64('createRevision');
    const version = r.u64('version');
    const lease = r.u64('lease');
    const eventValue = r.bytes(r.u32('value length'), 'value');
    if (match !== undefined && !match(keyBytes)) continue;
    const key = new ByteReader(keyBytes, fail).utf8(keyBytes.length, 'key');
    events.push({ type, key, value: eventValue, modRevision: revision, createRevision, version, lease });
  }
  r.end('events');
  return events;
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
