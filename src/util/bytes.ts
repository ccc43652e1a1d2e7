/**
 * Cursor-style writing and reading of the small binary formats flotilla stores and sends
 * (commands, key records, log entries). Integers are big-endian; indexes, terms and revisions take
 * 8 bytes (u64) so the formats never change when they grow, and so that byte order is numeric
 * order in LevelDB keys. They stay JS numbers: every value is a safe integer (< 2^53).
 */

import { assert } from './assert.js';

const TWO_TO_32 = 0x1_0000_0000;

/** Rejects ill-formed input instead of substituting U+FFFD; keeps a leading U+FEFF as data. */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes a u64 takes. */
export const U64_BYTES = 8;

/** True for an integer that fits a u64 field as a JS number. */
export function isU64(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** Writes n (a u64, checked by the caller) at offset. */
export function writeU64(buf: Buffer, n: number, offset: number): void {
  buf.writeUInt32BE(Math.floor(n / TWO_TO_32), offset);
  buf.writeUInt32BE(n >>> 0, offset + 4);
}

/**
 * Reads the u64 at offset. A stored value of 2^53 or more comes back as a number that is not a
 * safe integer: callers reading untrusted bytes check with `isU64`.
 */
export function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset) * TWO_TO_32 + buf.readUInt32BE(offset + 4);
}

/** A Buffer view of bytes, without copying them. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Fills a buffer of a size computed up front (one allocation per record). `done()` returns it and
 * checks that exactly that many bytes were written, which catches a size computation that drifted
 * from the writes.
 */
export class ByteWriter {
  readonly #buf: Buffer;
  #offset = 0;

  /** Writes `size` bytes into a new buffer, or into `into` (exactly `size` long) when given. */
  constructor(size: number, into?: Buffer) {
    assert(into === undefined || into.length === size, `ByteWriter: a target of ${into?.length} bytes for ${size}`);
    this.#buf = into ?? Buffer.allocUnsafe(size);
  }

  u8(n: number): this {
    this.#offset = this.#buf.writeUInt8(n, this.#offset);
    return this;
  }

  u16(n: number): this {
    this.#offset = this.#buf.writeUInt16BE(n, this.#offset);
    return this;
  }

  u32(n: number): this {
    this.#offset = this.#buf.writeUInt32BE(n, this.#offset);
    return this;
  }

  u64(n: number): this {
    writeU64(this.#buf, n, this.#offset);
    this.#offset += U64_BYTES;
    return this;
  }

  bytes(bytes: Uint8Array): this {
    this.#buf.set(bytes, this.#offset);
    this.#offset += bytes.byteLength;
    return this;
  }

  /** Writes s as UTF-8; byteLength is what the caller measured with Buffer.byteLength. */
  utf8(s: string, byteLength: number): this {
    this.#offset += this.#buf.write(s, this.#offset, byteLength, 'utf8');
    return this;
  }

  done(): Buffer {
    assert(this.#offset === this.#buf.length, `ByteWriter: wrote ${this.#offset} of ${this.#buf.length} bytes`);
    return this.#buf;
  }
}

/**
 * Reads a buffer front to back. Every read checks the remaining length, and every failure goes
 * through `fail`, so each format reports its own typed error naming what it was reading.
 */
export class ByteReader {
  readonly #buf: Buffer;
  readonly #fail: (reason: string) => Error;
  #offset = 0;

  constructor(bytes: Uint8Array, fail: (reason: string) => Error) {
    this.#buf = asBuffer(bytes);
    this.#fail = fail;
  }

  get remaining(): number {
    return this.#buf.length - this.#offset;
  }

  u8(what: string): number {
    this.#need(1, what);
    return this.#buf[this.#offset++];
  }

  u16(what: string): number {
    this.#need(2, what);
    const n = this.#buf.readUInt16BE(this.#offset);
    this.#offset += 2;
    return n;
  }

  u32(what: string): number {
    this.#need(4, what);
    const n = this.#buf.readUInt32BE(this.#offset);
    this.#offset += 4;
    return n;
  }

  u64(what: string): number {
    this.#need(U64_BYTES, what);
    const n = readU64(this.#buf, this.#offset);
    if (!isU64(n)) throw this.#fail(`${what} does not fit in 53 bits`);
    this.#offset += U64_BYTES;
    return n;
  }

  /** The next n bytes, as a view into the input (no copy). */
  bytes(n: number, what: string): Buffer {
    this.#need(n, what);
    const view = this.#buf.subarray(this.#offset, this.#offset + n);
    this.#offset += n;
    return view;
  }

  /** The next n bytes as a string; they must be well-formed UTF-8. */
  utf8(n: number, what: string): string {
    const view = this.bytes(n, what);
    // ASCII (the common case for keys and ids) decodes the same as Latin-1, which is fastest.
    if (isAscii(view)) return view.toString('latin1');
    try {
      return STRICT_UTF8.decode(view);
    } catch {
      throw this.#fail(`${what} is not valid UTF-8`);
    }
  }

  /** Fails unless every byte was consumed: trailing bytes mean a misparse or a newer format. */
  end(what: string): void {
    if (this.remaining !== 0) throw this.#fail(`${this.remaining} unexpected trailing bytes after ${what}`);
  }

  #need(n: number, what: string): void {
    if (this.remaining < n) throw this.#fail(`truncated: ${what} needs ${n} bytes, ${this.remaining} left`);
  }
}

function isAscii(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) return false;
  return true;
}
