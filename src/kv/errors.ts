/**
 * The key-value store's expected failures. Each has a stable `code` (see util/errors.ts) and knows
 * nothing about HTTP; the API maps codes to statuses in one place.
 */
import { FlotillaError } from '../util/errors.js';

/** A write's If-Match / If-None-Match condition did not hold; nothing was changed. */
export class PreconditionFailedError extends FlotillaError {
  override name = 'PreconditionFailedError';

  /**
   * @param key the key the write named
   * @param modRevision the key's modRevision when the write was applied, 0 if it was absent
   * @param message e.g. `Cannot write "a/b": modRevision is 7, If-Match wanted 5`
   */
  constructor(
    readonly key: string,
    readonly modRevision: number,
    message: string,
  ) {
    super('PRECONDITION_FAILED', message);
  }
}

/** A read named a key that does not exist. */
export class KeyNotFoundError extends FlotillaError {
  override name = 'KeyNotFoundError';

  constructor(readonly key: string) {
    super('KEY_NOT_FOUND', `Key ${JSON.stringify(key)} not found`);
  }
}

/**
 * Bytes read from disk or the network do not decode: a checksum mismatch, a truncated record, an
 * unknown format version. The message names what was being read and where.
 */
export class CorruptDataError extends FlotillaError {
  override name = 'CorruptDataError';

  constructor(message: string, options?: ErrorOptions) {
    super('CORRUPT_DATA', message, options);
  }
}

/** Bad input caught by the store: an empty or ill-formed key, a bad revision number or limit. */
export class InvalidArgumentError extends FlotillaError {
  override name = 'InvalidArgumentError';

  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/** A key exceeds what one command may carry (MAX_KEY_BYTES in command.ts). */
export class KeyTooLargeError extends FlotillaError {
  override name = 'KeyTooLargeError';

  constructor(message: string) {
    super('KEY_TOO_LARGE', message);
  }
}

/** A value exceeds what one command may carry (MAX_VALUE_BYTES in command.ts). */
export class ValueTooLargeError extends FlotillaError {
  override name = 'ValueTooLargeError';

  constructor(message: string) {
    super('VALUE_TOO_LARGE', message);
  }
}

/** A lease named by a put, a txn or a revoke does not exist (never granted, expired or revoked). */
export class LeaseNotFoundError extends FlotillaError {
  override name = 'LeaseNotFoundError';

  constructor(
    readonly id: number,
    message = `Lease ${id} not found`,
  ) {
    super('LEASE_NOT_FOUND', message);
  }
}

/** A grant chose an id that is already a lease; the proposer picks ids, so it may retry another. */
export class LeaseExistsError extends FlotillaError {
  override name = 'LeaseExistsError';

  constructor(readonly id: number) {
    super('INVALID_ARGUMENT', `Lease ${id} already exists`);
  }
}

/** A grant beyond MAX_LEASES (kv-state.ts): refused, as every bounded queue is, with OVERLOADED. */
export class TooManyLeasesError extends FlotillaError {
  override name = 'TooManyLeasesError';

  constructor(readonly limit: number) {
    super('OVERLOADED', `Cannot grant a lease: ${limit} leases exist, the most allowed`);
  }
}

/**
 * A watch asked for history older than what is kept: revisions up to `compactRevision` are gone
 * (retention keeps the most recent ones only; see storage/level-storage.ts).
 */
export class CompactedError extends FlotillaError {
  override name = 'CompactedError';

  constructor(
    readonly fromRevision: number,
    readonly compactRevision: number,
  ) {
    super(
      'COMPACTED',
      `Revision ${fromRevision} is compacted: history is kept after revision ${compactRevision} only`,
    );
  }
}
