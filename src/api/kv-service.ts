import type { KvRecord } from '../kv/kv-record.js';
import type { DeleteResult, PutResult } from '../kv/kv-state.js';
import type { ListOptions, ListPage } from '../storage/level-storage.js';
import type { WatchFilter, WatchSink } from '../member/watch-hub.js';

/** Conditions on a write, from If-Match / If-None-Match. */
export interface WriteOptions {
  readonly ifMatch?: number;
  readonly ifNoneMatch?: boolean;
}

export interface PutOptions extends WriteOptions {
  readonly lease?: number;
}

export interface MemberStatusView {
  readonly name: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly leaderClientUrl: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
}

export interface TxnCompareInput {
  readonly key: string;
  readonly target: 'value' | 'modRevision' | 'createRevision' | 'version';
  readonly op: '=' | '!=' | '<' | '>';
  readonly value: Uint8Array | number;
}

export type TxnOpInput =
  | { readonly op: 'put'; readonly key: string; readonly value: Uint8Array; readonly lease?: number }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'get'; readonly key: string };

export interface TxnInput {
  readonly compare: readonly TxnCompareInput[];
  readonly success: readonly TxnOpInput[];
  readonly failure: readonly TxnOpInput[];
}

export interface TxnOutcome {
  readonly succeeded: boolean;
  readonly revision: number;
  readonly results: ReadonlyArray<
    | { readonly op: 'put'; readonly key: string; readonly modRevision: number; readonly createRevision: number; readonly version: number }
    | { readonly op: 'delete'; readonly key: string; readonly deleted: 0 | 1 }
    | { readonly op: 'get'; readonly key: string; readonly item: KvRecord | null }
  >;
}

/**
 * What the REST API needs from a member. The API declares it; `member/` supplies it; route tests
 * can supply a fake. Methods throw FlotillaError subclasses for expected failures.
 */
export interface KvService {
  readonly name: string;
  put(key: string, value: Uint8Array, options: PutOptions): Promise<PutResult>;
  delete(key: string, options: WriteOptions): Promise<DeleteResult>;
  /**
   * A key's record, or null. May answer synchronously (a member answers a stale read at once, with
   * no promise: the hot path); a linearizable read returns a promise.
   */
  get(key: string, consistency: 'linearizable' | 'stale'): KvRecord | null | Promise<KvRecord | null>;
  list(options: ListOptions, consistency: 'linearizable' | 'stale'): Promise<ListPage>;
  txn(txn: TxnInput): Promise<TxnOutcome>;
  grantLease(ttlSeconds: number): Promise<{ id: number; ttl: number }>;
  keepAliveLease(id: number): Promise<{ id: number; ttl: number }>;
  revokeLease(id: number): Promise<{ deletedKeys: number; revision: number }>;
  /** Start a watch (null: from now); resolves once it is live; throws CompactedError if too old. */
  openWatch(filter: WatchFilter, fromRevision: number | null, sink: WatchSink): Promise<() => void>;
  members(): { members: Array<{ name: string; peerUrl: string | null; clientUrl: string | null; voter: boolean }> };
  addMember(name: string, peerUrl: string): Promise<ReturnType<KvService['members']>>;
  removeMember(name: string): Promise<void>;
  transferLeader(name: string): Promise<void>;
  /** A consistent backup image in a temp file; call `release` when it has been sent. */
  backup(): Promise<{ file: string; meta: { index: number; term: number }; revision: number; release: () => Promise<void> }>;
  status(): MemberStatusView;
  health(): { healthy: boolean; reason: string };
  /** The leader's client URL if one is known in the current term and it is not us. */
  leaderClientUrl(): string | null;
  isLeader(): boolean;
  metrics(): Promise<{ contentType: string; body: string }>;
  observeHttp(method: string, route: string, status: number, seconds: number): void;
}
