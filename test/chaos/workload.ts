/**
 * The chaos workload: a few concurrent clients, each doing one operation at a time on a handful of
 * keys, each request sent to a random member (307s followed, bounded), every operation recorded in a
 * HistoryRecorder as it really went:
 *
 *   - invoke is recorded before the first byte is sent, the completion after the answer is read;
 *   - ok: the member answered what happened (200; 404 for a read; 412 for a conditional write);
 *   - fail: it certainly did not happen — the connection was refused or never opened (nothing was
 *     sent), a 307 chain ran out, or a 503 whose code flotilla documents as not applied
 *     (NO_LEADER, LEADER_CHANGED, OVERLOADED, SHUTTING_DOWN); any 503/504 on a read;
 *   - unknown: it may have happened — a timeout, a dropped connection, a 504, any other 503 or 5xx
 *     on a write.
 * Choices (op, key, member, values) come from the seed; timing comes from the machine.
 */
import { Agent, request } from 'undici';
import { SeededRng, type Rng } from '../../src/util/rng.js';
import type { HistoryRecorder, OpInput, OpKind, OpOutput } from './checker/history.js';
import { sleep, type MemberSpec } from '../support/process-cluster.js';

export type ReadMode = 'linearizable' | 'stale';

/** 503 codes that flotilla documents as "definitely not applied" (docs/api.md). */
export const NOT_APPLIED_CODES: ReadonlySet<string> = new Set(['NO_LEADER', 'LEADER_CHANGED', 'OVERLOADED', 'SHUTTING_DOWN']);
/** Network errors that mean no request byte reached a member. */
const NOTHING_SENT_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EADDRNOTAVAIL']);

export interface OpMix {
  readonly get: number;
  readonly put: number;
  /** cas with If-Match on the client's last seen ETag for the key (a create when it has seen none). */
  readonly cas: number;
  readonly create: number;
  readonly delete: number;
}

export const DEFAULT_MIX: OpMix = { get: 0.4, put: 0.2, cas: 0.2, create: 0.1, delete: 0.1 };

/** What the clients share with the nemesis: the leader as last seen, to send stale reads elsewhere. */
export interface ClusterView {
  leader: string | null;
}

export interface WorkloadOptions {
  readonly seed: number;
  readonly members: readonly MemberSpec[];
  readonly recorder: HistoryRecorder;
  readonly clients: number;
  readonly keys: number;
  readonly readMode: ReadMode;
  /** Stop invoking new ops at this performance.now() instant. */
  readonly deadlineMs: number;
  readonly view?: ClusterView;
  readonly mix?: OpMix;
  /** One op's whole budget, redirects included; past it the op is unknown (a write) or failed (a read). */
  readonly opTimeoutMs?: number;
  readonly maxRedirects?: number;
  /** Pause between a client's ops, drawn uniformly from [0, thinkMs). */
  readonly thinkMs?: number;
  /** Use a fresh set of keys every this many ms, so each key's history stays short enough to check. */
  readonly keyEpochMs?: number;
  /** A bound on each client's ops, whatever the clock says. */
  readonly maxOpsPerClient?: number;
}

export interface WorkloadFigures {
  readonly ops: number;
  readonly byOutcome: Record<'ok' | 'fail' | 'unknown', number>;
  readonly byKind: Record<OpKind, number>;
  /** Why ops failed or ended unknown: "503 NO_LEADER", "timeout", "ECONNREFUSED", ... */
  readonly reasons: Record<string, number>;
  readonly redirectsFollowed: number;
  /** Answers the API does not allow (a 500, a 400 for a well-formed request, a garbled body). */
  readonly unexpected: readonly string[];
}

const DEFAULT_OP_TIMEOUT_MS = 3000;
const DEFAULT_MAX_REDIRECTS = 3;
const DEFAULT_THINK_MS = 4;
const DEFAULT_MAX_OPS_PER_CLIENT = 1_000_000;
const BACKOFF_AFTER_FAIL_MS = 25;
const MAX_UNEXPECTED_KEPT = 50;

/** Runs the clients until the deadline; resolves once every client's last op is resolved. */
export async function runWorkload(options: WorkloadOptions): Promise<WorkloadFigures> {
  const agent = new Agent({
    keepAliveTimeout: 2000,
    connectTimeout: 1000,
    headersTimeout: options.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS,
    bodyTimeout: options.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS,
  });
  const tally = new Tally();
  try {
    const clients = Array.from({ length: options.clients }, (_, i) => runClient(i + 1, options, agent, tally));
    await Promise.all(clients);
  } finally {
    await agent.destroy().catch(() => undefined);
  }
  return tally.figures();
}

class Tally {
  ops = 0;
  readonly byOutcome = { ok: 0, fail: 0, unknown: 0 };
  readonly byKind: Record<OpKind, number> = { put: 0, get: 0, cas: 0, create: 0, delete: 0 };
  readonly reasons: Record<string, number> = {};
  redirectsFollowed = 0;
  readonly unexpected: string[] = [];

  reason(why: string): void {
    this.reasons[why] = (this.reasons[why] ?? 0) + 1;
  }

  surprise(what: string): void {
    if (this.unexpected.length < MAX_UNEXPECTED_KEPT) this.unexpected.push(what);
  }

  figures(): WorkloadFigures {
    return {
      ops: this.ops, byOutcome: { ...this.byOutcome }, byKind: { ...this.byKind }, reasons: { ...this.reasons },
      redirectsFollowed: this.redirectsFollowed, unexpected: [...this.unexpected],
    };
  }
}

interface Planned {
  readonly kind: OpKind;
  readonly key: string;
  readonly input: OpInput;
}

async function runClient(client: number, options: WorkloadOptions, agent: Agent, tally: Tally): Promise<void> {
  // One generator per client, so a client's choices do not depend on how the others interleave.
  const rng = new SeededRng((options.seed ^ Math.imul(client, 0x9e3779b1)) >>> 0);
  const etags = new Map<string, number>();
  const startMs = performance.now();
  const maxOps = options.maxOpsPerClient ?? DEFAULT_MAX_OPS_PER_CLIENT;
  for (let seq = 0; seq < maxOps && performance.now() < options.deadlineMs; seq++) {
    const epoch = options.keyEpochMs === undefined ? null : Math.floor((performance.now() - startMs) / options.keyEpochMs);
    const planned = plan(rng, client, seq, epoch, etags, options);
    const member = pickMember(rng, planned.kind, options);
    const id = options.recorder.invoke(client, planned.key, planned.kind, planned.input);
    tally.ops++;
    tally.byKind[planned.kind]++;
    const result = await execute(agent, member, planned, options, tally);
    if (result.outcome === 'ok') {
      options.recorder.ok(id, result.output);
      learnEtag(etags, planned, result.output);
    } else if (result.outcome === 'fail') {
      options.recorder.fail(id, result.output);
    } else {
      options.recorder.unknown(id, result.reason, result.output);
      etags.delete(planned.key); // whatever we knew may be out of date now
    }
    tally.byOutcome[result.outcome]++;
    if (result.outcome !== 'ok') tally.reason(result.reason);
    const think = options.thinkMs ?? DEFAULT_THINK_MS;
    const backoff = result.outcome === 'ok' ? 0 : BACKOFF_AFTER_FAIL_MS;
    if (think + backoff > 0) await sleep(rng.int(0, think) + backoff);
  }
}

function plan(rng: Rng, client: number, seq: number, epoch: number | null, etags: Map<string, number>, options: WorkloadOptions): Planned {
  const k = rng.int(0, options.keys);
  const key = epoch === null ? `k${k}` : `e${epoch}-k${k}`;
  const value = `c${client}-${seq}`;
  const mix = options.mix ?? DEFAULT_MIX;
  let r = rng.next() * (mix.get + mix.put + mix.cas + mix.create + mix.delete);
  if ((r -= mix.get) < 0) return { kind: 'get', key, input: {} };
  if ((r -= mix.put) < 0) return { kind: 'put', key, input: { value } };
  if ((r -= mix.cas) < 0) {
    const etag = etags.get(key);
    return etag === undefined ? { kind: 'create', key, input: { value } } : { kind: 'cas', key, input: { value, ifMatch: etag } };
  }
  if ((r -= mix.create) < 0) return { kind: 'create', key, input: { value } };
  return { kind: 'delete', key, input: {} };
}

/** Any member, uniformly; stale reads go to a member other than the leader as last seen. */
function pickMember(rng: Rng, kind: OpKind, options: WorkloadOptions): MemberSpec {
  const all = options.members;
  if (kind === 'get' && options.readMode === 'stale' && options.view?.leader) {
    const followers = all.filter((m) => m.name !== options.view?.leader);
    if (followers.length > 0) return followers[rng.int(0, followers.length)];
  }
  return all[rng.int(0, all.length)];
}

function learnEtag(etags: Map<string, number>, planned: Planned, output: OpOutput): void {
  if (output.preconditionFailed) {
    etags.delete(planned.key);
  } else if (planned.kind === 'delete' || (planned.kind === 'get' && output.value === null)) {
    etags.delete(planned.key);
  } else if (output.modRevision !== undefined) {
    etags.set(planned.key, output.modRevision);
  }
}

type Result =
  | { readonly outcome: 'ok'; readonly output: OpOutput }
  | { readonly outcome: 'fail' | 'unknown'; readonly reason: string; readonly output: OpOutput };

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

async function execute(agent: Agent, member: MemberSpec, planned: Planned, options: WorkloadOptions, tally: Tally): Promise<Result> {
  const isRead = planned.kind === 'get';
  const query = isRead && options.readMode === 'stale' ? '?consistency=stale' : '';
  let url = `${member.clientUrl}/v1/kv/${encodeURIComponent(planned.key)}${query}`;
  const method = isRead ? 'GET' : planned.kind === 'delete' ? 'DELETE' : 'PUT';
  const headers: Record<string, string> = {};
  if (planned.kind === 'cas') headers['if-match'] = `"${planned.input.ifMatch}"`;
  if (planned.kind === 'create') headers['if-none-match'] = '*';
  const signal = AbortSignal.timeout(options.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS);
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  for (let hop = 0; ; hop++) {
    let answer: Answer;
    try {
      const res = await request(url, { method, body: planned.input.value, headers, signal, dispatcher: agent });
      answer = { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
    } catch (err) {
      return networkFailure(err, isRead);
    }
    if (answer.status === 307) {
      const location = answer.headers['location'];
      noteLeader(options, typeof location === 'string' ? location : undefined);
      if (hop >= maxRedirects || typeof location !== 'string') return { outcome: 'fail', reason: 'too many redirects', output: { status: 307 } };
      tally.redirectsFollowed++;
      url = location;
      continue;
    }
    if (!isRead && answer.status === 200) noteLeaderUrl(options, url);
    return classify(planned, answer, tally, member.name);
  }
}

function networkFailure(err: unknown, isRead: boolean): Result {
  const e = err as { code?: unknown; name?: string; cause?: { code?: unknown } };
  // DOMException (an aborted signal) has a numeric legacy code: use its name instead.
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : e.name ?? 'error';
  const reason = code === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' ? 'timeout' : code;
  if (NOTHING_SENT_CODES.has(code)) return { outcome: 'fail', reason, output: {} };
  // A read has no effect either way; a write may have reached a leader before the error.
  return { outcome: isRead ? 'fail' : 'unknown', reason, output: {} };
}

function errorCode(body: Buffer): string | null {
  try {
    const code = (JSON.parse(body.toString('utf8')) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}

function classify(planned: Planned, answer: Answer, tally: Tally, memberName: string): Result {
  const { status, body } = answer;
  const isRead = planned.kind === 'get';
  const code = status >= 400 ? errorCode(body) : null;
  const where = `${planned.kind} ${planned.key} on ${memberName}`;
  if (status === 200) return okOutput(planned, answer, tally, where);
  if (status === 404 && isRead && code === 'KEY_NOT_FOUND') return { outcome: 'ok', output: { value: null, status } };
  if (status === 412 && (planned.kind === 'cas' || planned.kind === 'create') && code === 'PRECONDITION_FAILED') {
    return { outcome: 'ok', output: { preconditionFailed: true, status } };
  }
  const reason = `${status} ${code ?? '?'}`;
  if (status === 503 && (isRead || (code !== null && NOT_APPLIED_CODES.has(code)))) return { outcome: 'fail', reason, output: { status } };
  if (status === 503 || status === 504) return { outcome: isRead ? 'fail' : 'unknown', reason, output: { status } };
  tally.surprise(`${where}: ${status} ${body.toString('utf8').slice(0, 200)}`);
  // Anything else is a bug somewhere; a write that got a 5xx may still have been applied.
  return { outcome: !isRead && status >= 500 ? 'unknown' : 'fail', reason, output: { status } };
}

function okOutput(planned: Planned, answer: Answer, tally: Tally, where: string): Result {
  const status = answer.status;
  if (planned.kind === 'get') {
    const etag = answer.headers['etag'];
    const modRevision = typeof etag === 'string' ? Number(etag.replaceAll('"', '')) : NaN;
    if (!Number.isSafeInteger(modRevision)) tally.surprise(`${where}: 200 without a usable ETag (${String(etag)})`);
    const output: OpOutput = { value: answer.body.toString('utf8'), status };
    return { outcome: 'ok', output: Number.isSafeInteger(modRevision) ? { ...output, modRevision } : output };
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    tally.surprise(`${where}: 200 with a body that is not JSON`);
    return { outcome: 'unknown', reason: 'garbled 200', output: { status } };
  }
  const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined);
  if (planned.kind === 'delete') {
    const deleted = num(json['deleted']);
    if (deleted !== 0 && deleted !== 1) tally.surprise(`${where}: delete answered ${answer.body.toString('utf8')}`);
    return { outcome: 'ok', output: { status, revision: num(json['revision']), ...(deleted === 0 || deleted === 1 ? { deleted } : {}) } };
  }
  const modRevision = num(json['modRevision']);
  if (modRevision === undefined) tally.surprise(`${where}: write answered ${answer.body.toString('utf8')}`);
  return {
    outcome: 'ok',
    output: { status, modRevision, revision: num(json['revision']), createRevision: num(json['createRevision']), version: num(json['version']) },
  };
}

function noteLeader(options: WorkloadOptions, location: string | undefined): void {
  if (location !== undefined) noteLeaderUrl(options, location);
}

function noteLeaderUrl(options: WorkloadOptions, url: string): void {
  if (options.view === undefined) return;
  const member = options.members.find((m) => url.startsWith(`${m.clientUrl}/`));
  if (member !== undefined) options.view.leader = member.name;
}
