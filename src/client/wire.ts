/** Turning client arguments into URLs and bodies, and the server's JSON back into typed values. */
import { InvalidArgumentError } from './errors.js';
import type { KeyValue, WatchEvent } from './types.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A key as a URL path: each `/`-separated segment through encodeURIComponent. The server treats
 * `%2F` and `/` alike; segments `.` and `..` are spelled `%2E` so nothing on the way resolves them.
 */
export function encodeKeyPath(key: string): string {
  if (key.length === 0) throw new InvalidArgumentError('The key is empty');
  return key
    .split('/')
    .map((segment) => (segment === '.' || segment === '..' ? segment.replaceAll('.', '%2E') : encodeURIComponent(segment)))
    .join('/');
}

/** `?a=1&b=x` from defined entries (values percent-encoded; spaces as %20, never `+`). */
export function queryString(params: Record<string, string | number | boolean | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    parts.push(`${k}=${encodeURIComponent(String(v))}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

export function toBytes(value: string | Uint8Array): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function num(x: unknown, field: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x)) throw new TypeError(`server sent a bad "${field}": ${JSON.stringify(x)}`);
  return x;
}

function str(x: unknown, field: string): string {
  if (typeof x !== 'string') throw new TypeError(`server sent a bad "${field}": ${JSON.stringify(x)}`);
  return x;
}

/** `value` (UTF-8 text) or `valueBase64` → bytes; neither → empty. */
export function valueOf(o: Record<string, unknown>): Buffer {
  if (typeof o['value'] === 'string') return Buffer.from(o['value'], 'utf8');
  if (typeof o['valueBase64'] === 'string') return Buffer.from(o['valueBase64'], 'base64');
  return Buffer.alloc(0);
}

/** One item as listed (and as a txn `get` yields it). */
export function parseKeyValue(x: unknown): KeyValue {
  if (!isRecord(x)) throw new TypeError(`server sent a bad item: ${JSON.stringify(x)}`);
  return {
    key: str(x['key'], 'key'),
    value: valueOf(x),
    modRevision: num(x['modRevision'], 'modRevision'),
    createRevision: num(x['createRevision'], 'createRevision'),
    version: num(x['version'], 'version'),
  };
}

export function parseWatchEvent(x: unknown): WatchEvent {
  if (!isRecord(x)) throw new TypeError(`server sent a bad watch event: ${JSON.stringify(x)}`);
  const type = x['type'];
  if (type !== 'put' && type !== 'delete') throw new TypeError(`server sent a bad watch event type: ${JSON.stringify(type)}`);
  return { type, key: str(x['key'], 'key'), value: valueOf(x), modRevision: num(x['modRevision'], 'modRevision') };
}

export { isRecord, num as wireNumber, str as wireString };

/** A key/value as one JSON line for humans and scripts (value as text, or base64 when not UTF-8). */
export function jsonValueFields(value: Buffer): { value: string } | { valueBase64: string } {
  try {
    return { value: utf8.decode(value) };
  } catch {
    return { valueBase64: value.toString('base64') };
  }
}
