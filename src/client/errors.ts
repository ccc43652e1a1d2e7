/**
 * The client's typed failures. Each has a stable `code` callers can switch on; messages are for
 * humans and may change. The codes the server sends (docs/api.md) keep their names; the client
 * adds its own for what only it can know (UNAVAILABLE, LEASE_LOST, ...).
 */

export type ClientErrorCode =
  | 'PRECONDITION_FAILED'
  | 'KEY_NOT_FOUND'
  | 'LEASE_NOT_FOUND'
  | 'COMPACTED'
  | 'UNAVAILABLE'
  | 'OUTCOME_UNKNOWN'
  | 'INVALID_ARGUMENT'
  | 'LEASE_LOST'
  | 'LOCK_LOST'
  | 'NOT_ELECTION_LEADER'
  | 'CLIENT_CLOSED'
  | 'SERVER_ERROR';

export class FlotillaClientError extends Error {
  override name = 'FlotillaClientError';

  constructor(
    readonly code: ClientErrorCode,
    message: string,
    options?: ErrorOptions & { status?: number; serverCode?: string },
  ) {
    super(message, options);
    this.status = options?.status;
    this.serverCode = options?.serverCode;
  }

  /** The HTTP status of the answer that caused this, if there was one. */
  readonly status: number | undefined;
  /** The server's own error code (`{"error":{"code"}}`), if it sent one. */
  readonly serverCode: string | undefined;
}

/** If-Match / If-None-Match (or a txn compare the caller required) did not hold. Nothing was written. */
export class PreconditionFailedError extends FlotillaClientError {
  override name = 'PreconditionFailedError';
  constructor(message: string, options?: ErrorOptions & { status?: number; serverCode?: string }) {
    super('PRECONDITION_FAILED', message, options);
  }
}

/** The key is absent where it had to exist. (`get` returns null instead of throwing this.) */
export class KeyNotFoundError extends FlotillaClientError {
  override name = 'KeyNotFoundError';
  constructor(message: string, options?: ErrorOptions & { status?: number; serverCode?: string }) {
    super('KEY_NOT_FOUND', message, options);
  }
}

/** The lease expired or was revoked (the server answered 404 for it). */
export class LeaseNotFoundError extends FlotillaClientError {
  override name = 'LeaseNotFoundError';
  constructor(message: string, options?: ErrorOptions & { status?: number; serverCode?: string }) {
    super('LEASE_NOT_FOUND', message, options);
  }
}

/** A watch asked for history the server no longer keeps (HTTP 410). */
export class CompactedError extends FlotillaClientError {
  override name = 'CompactedError';
  constructor(
    message: string,
    readonly fromRevision: number,
    options?: ErrorOptions & { status?: number; serverCode?: string },
  ) {
    super('COMPACTED', message, options);
  }
}

/**
 * No member could serve the request before the deadline. For a write this is only thrown when
 * every attempt was definitely not applied (refused connections, 503 NO_LEADER, ...).
 */
export class UnavailableError extends FlotillaClientError {
  override name = 'UnavailableError';
  constructor(message: string, options?: ErrorOptions & { status?: number; serverCode?: string }) {
    super('UNAVAILABLE', message, options);
  }
}

/**
 * A write was sent and no definite answer came back (504, or the connection broke after the
 * request left). It may or may not have been applied; the client never retries it by itself.
 * Check with a read, or retry with a precondition (If-Match) so a second apply cannot happen.
 */
export class OutcomeUnknownError extends FlotillaClientError {
  override name = 'OutcomeUnknownError';
  constructor(message: string, options?: ErrorOptions & { status?: number; serverCode?: string }) {
    super('OUTCOME_UNKNOWN', message, options);
  }
}

/** The server refused the request as malformed or too large (400, 413, ...), or the caller passed bad input. */
export class InvalidArgumentError extends FlotillaClientError {
  override name = 'InvalidArgumentError';
  constructor(message: string, options?: ErrorOptions & { status?: number; serverCode?: string }) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** A lease this client kept alive is gone (keep-alive got 404, or failed for longer than the TTL). */
export class LeaseLostError extends FlotillaClientError {
  override name = 'LeaseLostError';
  constructor(message: string, options?: ErrorOptions) {
    super('LEASE_LOST', message, options);
  }
}

/** A lock's own queue key vanished (its lease expired) before or while it was held. */
export class LockLostError extends FlotillaClientError {
  override name = 'LockLostError';
  constructor(message: string, options?: ErrorOptions) {
    super('LOCK_LOST', message, options);
  }
}

/** proclaim() or resign() by a campaigner that is not (or no longer) the election's leader. */
export class NotElectionLeaderError extends FlotillaClientError {
  override name = 'NotElectionLeaderError';
  constructor(message: string, options?: ErrorOptions) {
    super('NOT_ELECTION_LEADER', message, options);
  }
}

/** The client was closed. */
export class ClientClosedError extends FlotillaClientError {
  override name = 'ClientClosedError';
  constructor(message = 'The client is closed') {
    super('CLIENT_CLOSED', message);
  }
}

/** Any other answer the server gave (the server's code is in `serverCode`). */
export class ServerError extends FlotillaClientError {
  override name = 'ServerError';
  constructor(message: string, options?: ErrorOptions & { status?: number; serverCode?: string }) {
    super('SERVER_ERROR', message, options);
  }
}
