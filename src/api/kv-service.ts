import type { KvRecord } from '../kv/kv-record.js';
import type { DeleteResult, PutResult } from '../kv/kv-state.js';

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

/**
 * What the REST API needs from a member. The API declares it; `member/` supplies it; route tests
 * can supply a fake. Methods throw FlotillaError subclasses for expected failures.
 */
export interface KvService {
  readonly name: string;
  put(key: string, value: Uint8Array, options: PutOptions): Promise<PutResult>;
  delete(key: string, options: WriteOptions): Promise<DeleteResult>;
  get(key: string, consistency: 'linearizable' | 'stale'): Promise<KvRecord | null>;
  status(): MemberStatusView;
  health(): { healthy: boolean; reason: string };
  /** The leader's client URL if one is known in the current term and it is not us. */
  leaderClientUrl(): string | null;
  isLeader(): boolean;
  metrics(): Promise<{ contentType: string; body: string }>;
  observeHttp(method: string, route: string, status: number, seconds: number): void;
}
