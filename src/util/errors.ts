/**
 * The base of every expected failure flotilla reports. Each failure has a stable `code` that
 * clients and the HTTP layer can rely on; the message is for humans and may change. Nothing here
 * knows about HTTP: `src/api/http-errors.ts` maps codes to statuses in one place.
 */

/**
 * Every stable error code. Adding a code is a contract change for clients, so it is one explicit
 * line here (and one in the HTTP status table, which is typed against this union).
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'KEY_NOT_FOUND'
  | 'PRECONDITION_FAILED'
  | 'VALUE_TOO_LARGE'
  | 'NOT_LEADER'
  | 'NO_LEADER'
  | 'OUTCOME_UNKNOWN'
  | 'CORRUPT_DATA'
  | 'KEY_TOO_LARGE'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'OVERLOADED'
  | 'LEASE_NOT_FOUND'
  | 'COMPACTED'
  | 'LEADER_CHANGED'
  | 'TIMEOUT'
  | 'SHUTTING_DOWN'
  | 'INTERNAL';

export class FlotillaError extends Error {
  override name = 'FlotillaError';

  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

