/**
 * The package's public entry (`import { connect, startMember } from 'flotilla'`). This is the one
 * file that re-exports: everything else is imported from its own module.
 */
export { startMember } from './member/start-member.js';
export type { StartMemberOptions } from './member/start-member.js';
export type { Member } from './member/member.js';
export type { ServeConfig, ServeConfigInput } from './config/schema.js';

export { connect, Client } from './client/client.js';
export type {
  ConnectOptions, CallOptions, GetOptions, PutOptions, DeleteOptions, ListOptions, ListAllOptions, LeaseOptions, WatchOptions,
} from './client/client.js';
export { Lease } from './client/lease.js';
export { Lock } from './client/lock.js';
export type { LockOptions, AcquireOptions } from './client/lock.js';
export { Election } from './client/election.js';
export type { ElectionOptions, LeaderInfo } from './client/election.js';
export {
  FlotillaClientError, PreconditionFailedError, KeyNotFoundError, LeaseNotFoundError, CompactedError, UnavailableError,
  OutcomeUnknownError, InvalidArgumentError, LeaseLostError, LockLostError, NotElectionLeaderError, ClientClosedError, ServerError,
} from './client/errors.js';
export type { ClientErrorCode } from './client/errors.js';
export type {
  KeyValue, PutResult, DeleteResult, Consistency, ListPage, CompareTarget, CompareOp, TxnCompare, TxnOp, TxnRequest,
  TxnResult, TxnOpResult, WatchEvent, WatchEventType,
} from './client/types.js';
