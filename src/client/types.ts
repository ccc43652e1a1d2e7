/** The shapes the client hands back: the wire's JSON with values as bytes. */

/** A key as stored. `value` is the raw bytes (a Buffer, so `.toString()` gives UTF-8). */
export interface KeyValue {
  readonly key: string;
  readonly value: Buffer;
  readonly modRevision: number;
  readonly createRevision: number;
  readonly version: number;
}

export interface PutResult {
  readonly key: string;
  /** The store's revision after this write (equal to modRevision). */
  readonly revision: number;
  readonly modRevision: number;
  readonly createRevision: number;
  readonly version: number;
}

export interface DeleteResult {
  readonly deleted: 0 | 1;
  readonly revision: number;
}

export type Consistency = 'linearizable' | 'stale';

export interface ListPage {
  /** The store revision the page was read at. */
  readonly revision: number;
  readonly items: readonly KeyValue[];
  /** More keys follow: ask again with `after` = the last item's key. */
  readonly more: boolean;
}

export type CompareTarget = 'value' | 'modRevision' | 'createRevision' | 'version';
export type CompareOp = '=' | '!=' | '<' | '>';

export interface TxnCompare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly op: CompareOp;
  /** A number for the revision targets; a string (or UTF-8 bytes) for `value`. */
  readonly value: number | string | Uint8Array;
}

export type TxnOp =
  | { readonly op: 'put'; readonly key: string; readonly value: string | Uint8Array; readonly lease?: number }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'get'; readonly key: string };

export interface TxnRequest {
  readonly compare?: readonly TxnCompare[];
  readonly success?: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

/**
 * One operation's result, in the order of the branch that ran: a `get` yields its KeyValue or
 * null; a put or delete yields the server's JSON object for it as sent.
 */
export type TxnOpResult = KeyValue | null | Readonly<Record<string, unknown>>;

export interface TxnResult {
  readonly succeeded: boolean;
  readonly revision: number;
  readonly results: readonly TxnOpResult[];
}

export type WatchEventType = 'put' | 'delete';

export interface WatchEvent {
  readonly type: WatchEventType;
  readonly key: string;
  /** The new value for a put; empty for a delete. */
  readonly value: Buffer;
  readonly modRevision: number;
}
