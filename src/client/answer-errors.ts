/** The one place a member's final non-2xx answer becomes a typed client error. */
import {
  CompactedError,
  FlotillaClientError,
  InvalidArgumentError,
  KeyNotFoundError,
  LeaseNotFoundError,
  OutcomeUnknownError,
  PreconditionFailedError,
  ServerError,
} from './errors.js';
import type { Answer } from './transport.js';
import { errorCodeOf, errorMessageOf } from './transport.js';

/** What a 404 means depends on the resource asked for. */
export type NotFoundMeaning = 'key' | 'lease' | 'other';

export function errorFromAnswer(answer: Answer, what: string, meaning: { notFound?: NotFoundMeaning } = {}): FlotillaClientError {
  const notFound = meaning.notFound ?? 'other';
  const serverCode = errorCodeOf(answer.body);
  const detail = errorMessageOf(answer.body) ?? answer.body.toString('utf8').slice(0, 200);
  const message = `${what}: ${detail || `HTTP ${answer.status}`}`;
  const options = { status: answer.status, serverCode };
  switch (answer.status) {
    case 400:
    case 413:
    case 431:
      return new InvalidArgumentError(message, options);
    case 404:
      if (notFound === 'lease' || serverCode === 'LEASE_NOT_FOUND') return new LeaseNotFoundError(message, options);
      if (notFound === 'key' || serverCode === 'KEY_NOT_FOUND') return new KeyNotFoundError(message, options);
      return new ServerError(message, options);
    case 410:
      return new CompactedError(message, Number.NaN, options);
    case 412:
      return new PreconditionFailedError(message, options);
    case 504:
      return new OutcomeUnknownError(message, options);
    default:
      return new ServerError(message, options);
  }
}
