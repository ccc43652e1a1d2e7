import { FlotillaError } from '../util/errors.js';

/** This member is not the leader, and it knows one it heard from in the current term. */
export class NotLeaderError extends FlotillaError {
  override name = 'NotLeaderError';
  constructor(readonly leader: string, readonly leaderClientUrl: string) {
    super('NOT_LEADER', `${leader} is the leader; send writes to ${leaderClientUrl}`);
  }
}

/** No leader is known (an election is under way, or this member is cut off). Safe to retry. */
export class NoLeaderError extends FlotillaError {
  override name = 'NoLeaderError';
  constructor(message = 'No leader is known right now (an election may be under way); retry shortly') {
    super('NO_LEADER', message);
  }
}

/** The write was proposed but its fate is unknown: it may have been applied. */
export class OutcomeUnknownError extends FlotillaError {
  override name = 'OutcomeUnknownError';
  constructor(message: string) {
    super('OUTCOME_UNKNOWN', `${message}; the write may or may not have been applied`);
  }
}

/** Another leader's entry took the place of ours: the write was definitely not applied. */
export class LeaderChangedError extends FlotillaError {
  override name = 'LeaderChangedError';
  constructor() {
    super('LEADER_CHANGED', 'Leadership changed before the write committed; it was not applied, retry');
  }
}

/** A bounded queue is full; the request was not accepted. */
export class OverloadedError extends FlotillaError {
  override name = 'OverloadedError';
  constructor(what: string) {
    super('OVERLOADED', `Too many ${what} in flight; retry shortly`);
  }
}

/** A read could not be confirmed in time (no effect on data). */
export class ReadTimeoutError extends FlotillaError {
  override name = 'ReadTimeoutError';
  constructor(ms: number, what = 'Could not confirm a linearizable read') {
    super('TIMEOUT', `${what} within ${ms} ms`);
  }
}

export class ShuttingDownError extends FlotillaError {
  override name = 'ShuttingDownError';
  constructor() {
    super('SHUTTING_DOWN', 'This member is shutting down');
  }
}
