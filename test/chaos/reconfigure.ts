/**
 * The nemeses that act through the cluster itself rather than through signals and iptables:
 *
 *   - membership, through the Cluster API: mostly, replace a member the way an operator replaces a
 *     dead one. DELETE it from the cluster (the leader half of the time: it must step down once its
 *     removal commits), sometimes leave it running a while (a removed member must not disturb the
 *     others), stop it, wipe its data dir, and start it again under the same name and ports on an
 *     empty disk as a new member, `serve --join <a live member's client URL>`: it catches up as a
 *     learner and the leader promotes it to voter. Otherwise, hand leadership to a follower
 *     (POST /v1/cluster/leader).
 *   - snapshot: SIGKILL a member, write until the other two have compacted their logs past anything
 *     it can hold (their flotilla_raft_first_index), and start it again: it can only catch up by
 *     InstallSnapshot, which its flotilla_snapshots_installed_total must show. Sometimes instead wipe
 *     a follower and re-add it once the log has been compacted (a new member needs a snapshot too).
 *
 * One change at a time; a fault starts only when every member runs and is a voter, and ends with the
 * cluster back at three voters. The workload's clients keep their names and URLs: while a member is
 * out its port refuses connections, which the history records as failed operations. What the cluster
 * does wrong (a removed leader that keeps leading, a joined member never promoted, a member that does
 * not catch up) goes to NemesisFigures.problems and fails the run.
 */
import { rm } from 'node:fs/promises';
import { http, httpFollow, sleep, type MemberSpec } from '../support/process-cluster.js';
import { problem, startMember, type FaultContext } from './fault-context.js';

/** Whom the nemesis drew, and whether it led when drawn. */
export interface Victim {
  readonly target: string;
  readonly wasLeader: boolean;
}

/** The fault's random draws in [0, 1), taken for every fault whatever it uses. */
export interface Draws {
  readonly variant: number;
  readonly pick: number;
  readonly span: number;
}

export interface Reconfigured {
  readonly variant: 'replace' | 'transfer' | 'lag' | 'wipe';
  readonly targets: string[];
  readonly wasLeader: boolean;
  readonly detail: string;
  /** Snapshots the member brought back installed while catching up, from its metrics. */
  readonly snapshotInstalls?: number;
  /** The others' logs had been compacted past the member before it came back. */
  readonly forced?: boolean;
}

/** membership: replace this often (and always first), else transfer leadership; a replaced member lingers after its removal this often. */
const REPLACE_SHARE = 0.65;
const LINGER_SHARE = 0.5;
const LINGER_MS: readonly [number, number] = [500, 2500];
/** snapshot: wipe and re-add a follower this often, else stop one until the others compact past it. */
const WIPE_SHARE = 0.25;

const CHANGE_BUDGET_MS = 20_000;
const MAX_CHANGE_ATTEMPTS = 100;
const RETRY_MS = 200;
const REQUEST_TIMEOUT_MS = 5000;
const STEP_DOWN_MS = 3000;
const LEADER_AMONG_OTHERS_MS = 10_000;
const JOIN_BUDGET_MS = 30_000;
const MAX_JOIN_STARTS = 3;
const CATCH_UP_MS = 20_000;
const COMPACT_BUDGET_MS = 30_000;
const MAX_COMPACT_ROUNDS = 2000;
const FILLER_BATCH = 8;
const MAX_FILLER_WRITES = 5000;
/** Filler writes go to a key the workload never uses (its keys are k<n> and e<epoch>-k<n>), so the checker never sees them. */
const FILLER_KEY = 'nemesis-filler';
/** Entries a member may append between the scrape of its last index and its SIGKILL. */
const LAST_INDEX_MARGIN = 32;
const POLL_MS = 100;
const MAX_POLLS = 2000;

const INSTALLS_METRIC = 'flotilla_snapshots_installed_total';
const FIRST_INDEX_METRIC = 'flotilla_raft_first_index';
const LAST_INDEX_METRIC = 'flotilla_raft_last_index';

export async function membershipFault(ctx: FaultContext, victim: Victim, draws: Draws): Promise<Reconfigured | null> {
  if (!(await wholeCluster(ctx))) return null;
  // The first is always a replacement, so even a short run replaces a member.
  if (ctx.shared.replacements > 0 && draws.variant >= REPLACE_SHARE) return transferLeadership(ctx, draws.pick);
  const lingers = draws.span >= LINGER_SHARE;
  const lingerMs = lingers ? Math.floor(LINGER_MS[0] + ((draws.span - LINGER_SHARE) / (1 - LINGER_SHARE)) * (LINGER_MS[1] - LINGER_MS[0])) : 0;
  return replaceMember(ctx, victim.target, { variant: 'replace', lingerMs, pick: draws.pick, compactFirst: false });
}

export async function snapshotFault(ctx: FaultContext, victim: Victim, draws: Draws): Promise<Reconfigured | null> {
  if (!(await wholeCluster(ctx))) return null;
  if (draws.variant >= WIPE_SHARE) return lagBehindSnapshot(ctx, victim.target);
  const { cluster } = ctx.options;
  const leader = await cluster.leader();
  const followers = cluster.members.filter((m) => m.name !== leader);
  if (leader === null || followers.length === 0) return null;
  const target = followers[Math.floor(draws.pick * followers.length)].name;
  return replaceMember(ctx, target, { variant: 'wipe', lingerMs: 0, pick: draws.span, compactFirst: true });
}

interface MemberView {
  readonly name: string;
  readonly voter: boolean;
}

/** Every member runs, none is under another fault, and the leader counts each as a voter. */
async function wholeCluster(ctx: FaultContext): Promise<boolean> {
  const { cluster } = ctx.options;
  if (cluster.members.some((m) => !cluster.isRunning(m.name) || ctx.shared.busy.has(m.name))) return false;
  const view = await membersView(ctx);
  return view !== null && cluster.members.every((m) => view.some((v) => v.name === m.name && v.voter));
}

/** GET /v1/cluster/members from the leader: its view is the latest configuration. */
async function membersView(ctx: FaultContext): Promise<readonly MemberView[] | null> {
  const { cluster } = ctx.options;
  const leader = await cluster.leader();
  if (leader === null) return null;
  try {
    const r = await http('GET', `${cluster.member(leader).clientUrl}/v1/cluster/members`, { timeoutMs: REQUEST_TIMEOUT_MS });
    return r.status === 200 ? r.json<{ members: MemberView[] }>().members : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------- replace

interface ReplaceOptions {
  readonly variant: 'replace' | 'wipe';
  /** How long the removed member keeps running before it is stopped. */
  readonly lingerMs: number;
  /** Which live member it joins through. */
  readonly pick: number;
  /** Make sure the log has been compacted before it joins, so it must catch up by snapshot. */
  readonly compactFirst: boolean;
}

/**
 * Remove `target` through the API, stop it, wipe its data dir and start it as a new member with
 * --join; done when the leader lists it as a voter again. The steps taken go into the detail.
 */
async function replaceMember(ctx: FaultContext, target: string, o: ReplaceOptions): Promise<Reconfigured> {
  const { cluster } = ctx.options;
  const { shared } = ctx;
  const spec = cluster.member(target);
  const leading = (await cluster.status(target))?.role === 'leader';
  const role = leading ? ' (leader)' : '';
  const steps: string[] = [];
  const t0 = performance.now();
  const result = (extra: Partial<Reconfigured> = {}): Reconfigured => ({
    variant: o.variant, targets: [target], wasLeader: leading, detail: `${o.variant} ${target}${role}: ${steps.join('; ')}`, ...extra,
  });
  shared.busy.add(target);
  try {
    const removal = await clusterRequest(ctx, 'DELETE', `/v1/cluster/members/${encodeURIComponent(target)}`, undefined, target);
    // A 400 "not a member" after a lost answer means an earlier attempt did it.
    const removed = removal.answer.status === 200 || (removal.attempts > 1 && removal.answer.status === 400 && removal.answer.text.includes('is not a member'));
    if (!removed) {
      steps.push(`not removed (${removal.answer.status} ${removal.answer.text})`);
      problem(ctx, `could not remove ${target}${role} within ${CHANGE_BUDGET_MS} ms (${removal.attempts} attempts; last answer ${removal.answer.status} ${removal.answer.text})`);
      return result();
    }
    steps.push(`removed in ${since(t0)} ms${removal.attempts > 1 ? ` (${removal.attempts} attempts; first answer ${describe(removal.first)})` : ''}`);
    // 503s are retried (no leader; a change still committing), but a healthy cluster under no other
    // fault commits one config entry well within --request-timeout: a 504 means it could not (a
    // leader that removed itself used to hang until it lost its quorum).
    if (removal.timedOut > 0) problem(ctx, `DELETE /v1/cluster/members/${target}${role} timed out (${removal.timedOut}x 504 or no answer) before it went through, with no other fault under way`);
    if (leading) {
      const stepped = await waitUntil(STEP_DOWN_MS, async () => (await cluster.status(target))?.role !== 'leader');
      if (!stepped) problem(ctx, `${target} was removed while leading and still said it led ${STEP_DOWN_MS} ms after its removal committed`);
      steps.push(stepped ? 'it stepped down' : 'it did NOT step down');
      // The other two elect a leader among themselves (an election timeout: nobody hands over).
      const next = await cluster.waitForLeader(LEADER_AMONG_OTHERS_MS).catch(() => null);
      steps.push(next === null ? `no new leader within ${LEADER_AMONG_OTHERS_MS} ms` : `${next} leads`);
    }
    if (o.lingerMs > 0) steps.push(await linger(ctx, target, o.lingerMs));

    shared.down.add(target);
    const stopStart = performance.now();
    await cluster.signal(target, 'SIGTERM');
    shared.fresh.add(target); // from now on it may only start as a new member
    await rm(spec.dataDir, { recursive: true, force: true });
    steps.push(`stopped (SIGTERM, ${since(stopStart)} ms), data dir wiped`);

    const others = cluster.members.filter((m) => m.name !== target && cluster.isRunning(m.name));
    let forced: boolean | undefined;
    if (o.compactFirst) {
      const c = await compactPast(others, 0);
      forced = c.ok;
      steps.push(c.ok ? `the others' logs compacted (they start at ${c.first}; ${c.fillerWrites} filler writes)` : 'the others had not compacted their logs');
    }
    if (others.length === 0) {
      problem(ctx, `no member left running to join ${target} through`);
      return result();
    }
    const via = others[Math.floor(o.pick * others.length)];
    const joined = await join(ctx, spec, via);
    if (!joined.voter) {
      steps.push(`started with --join via ${via.name}, not a voter after ${JOIN_BUDGET_MS} ms`);
      // What it and the leader say now, for the report (the members' logs go with it).
      const own = await cluster.status(target);
      const view = await membersView(ctx);
      problem(ctx, `${target} was started with --join ${via.clientUrl} but was not a voter ${JOIN_BUDGET_MS} ms later` +
        `${joined.exits.length > 0 ? ` (exits: ${joined.exits.join('; ')})` : ''}; its status: ${JSON.stringify(own)}; the leader's member list: ${JSON.stringify(view)}`);
      return result({ forced });
    }
    shared.fresh.delete(target);
    shared.replacements++;
    const installs = await metric(spec.clientUrl, INSTALLS_METRIC);
    steps.push(`rejoined via ${via.name}${joined.starts > 1 ? ` (${joined.starts} starts)` : ''}, a voter ${joined.ms} ms later, caught up by ${describeInstalls(installs)}`);
    return result({ forced, ...(installs === null ? {} : { snapshotInstalls: installs }) });
  } finally {
    shared.down.delete(target);
    shared.busy.delete(target);
  }
}

/**
 * Leave a removed member running for `ms`: it must not claim to lead, nor disturb the other two
 * (a removed member that campaigned would push their term up).
 */
async function linger(ctx: FaultContext, target: string, ms: number): Promise<string> {
  const { cluster } = ctx.options;
  const before = await othersTerm(ctx, target);
  let claimed = false;
  const end = performance.now() + ms;
  for (let i = 0; i < MAX_POLLS && performance.now() < end; i++) {
    if ((await cluster.status(target))?.role === 'leader') claimed = true;
    await sleep(Math.max(0, Math.min(POLL_MS, end - performance.now())));
  }
  const after = await othersTerm(ctx, target);
  if (claimed) problem(ctx, `${target} said it led while it ran on after its removal`);
  // Nothing else is under way: an election among the other two now is the removed member's doing.
  if (after > before) problem(ctx, `the others' term went ${before} -> ${after} while the removed ${target} ran on (${ms} ms)`);
  return `left running ${ms} ms after (the others' term ${after > before ? `went ${before} -> ${after}` : `stayed ${after}`})`;
}

async function othersTerm(ctx: FaultContext, target: string): Promise<number> {
  const { cluster } = ctx.options;
  const others = cluster.members.filter((m) => m.name !== target && cluster.isRunning(m.name));
  const statuses = await Promise.all(others.map((m) => cluster.status(m.name)));
  return Math.max(0, ...statuses.map((s) => s?.term ?? 0));
}

/** Start `spec` with --join through `via` and wait until the leader lists it as a voter; restart a join that exits (bounded). */
async function join(ctx: FaultContext, spec: MemberSpec, via: MemberSpec): Promise<{ voter: boolean; ms: number; starts: number; exits: string[] }> {
  const { cluster } = ctx.options;
  const t0 = performance.now();
  const exits: string[] = [];
  startMember(ctx, spec.name, via.clientUrl);
  let starts = 1;
  const voter = await waitUntil(JOIN_BUDGET_MS, async () => {
    if (!cluster.isRunning(spec.name)) {
      const status = cluster.exitStatus(spec.name);
      const lines = cluster.logs(spec.name).trimEnd().split('\n');
      exits.push(`exit ${status?.code ?? status?.signal ?? '?'}: ${lines[lines.length - 1].slice(0, 300)}`);
      if (starts >= MAX_JOIN_STARTS) return false;
      await rm(spec.dataDir, { recursive: true, force: true });
      startMember(ctx, spec.name, via.clientUrl);
      starts++;
      return false;
    }
    return (await membersView(ctx))?.some((m) => m.name === spec.name && m.voter) ?? false;
  });
  if (exits.length > 0) problem(ctx, `${spec.name} started with --join ${via.clientUrl} exited on its own: ${exits.join('; ')}`);
  return { voter, ms: since(t0), starts, exits };
}

// ---------------------------------------------------------------------------------- transfer

/** POST /v1/cluster/leader: hand leadership from the leader to a follower drawn by `pick`. */
async function transferLeadership(ctx: FaultContext, pick: number): Promise<Reconfigured | null> {
  const { cluster } = ctx.options;
  const from = await cluster.leader();
  if (from === null) return null;
  const candidates = cluster.members.filter((m) => m.name !== from && cluster.isRunning(m.name) && !ctx.shared.busy.has(m.name));
  if (candidates.length === 0) return null;
  const to = candidates[Math.floor(pick * candidates.length)].name;
  const t0 = performance.now();
  const moved = await clusterRequest(ctx, 'POST', '/v1/cluster/leader', { name: to });
  const took = since(t0);
  const leads = moved.answer.status === 200 && (await waitUntil(STEP_DOWN_MS, async () => (await cluster.status(to))?.role === 'leader'));
  const detail = moved.answer.status === 200
    ? `transfer leadership ${from} -> ${to}: 200 in ${took} ms${moved.attempts > 1 ? ` (${moved.attempts} attempts)` : ''}${leads ? '' : `, yet ${to} did not say it led`}`
    : `transfer leadership ${from} -> ${to}: not moved (${moved.answer.status} ${moved.answer.text})`;
  return { variant: 'transfer', targets: [from, to], wasLeader: true, detail };
}

// ---------------------------------------------------------------------------------- snapshot

/**
 * SIGKILL `target`, write until both others' logs start past the last index it can hold, and
 * start it again: its only way back is a snapshot from the leader. A member that came back behind
 * the others' compacted logs yet installed nothing, or that does not catch up, is a problem.
 */
async function lagBehindSnapshot(ctx: FaultContext, target: string): Promise<Reconfigured> {
  const { cluster } = ctx.options;
  const { shared } = ctx;
  const spec = cluster.member(target);
  const leading = (await cluster.status(target))?.role === 'leader';
  const role = leading ? ' (leader)' : '';
  shared.busy.add(target);
  try {
    const targetLast = await metric(spec.clientUrl, LAST_INDEX_METRIC);
    shared.down.add(target);
    await cluster.kill(target);
    const others = cluster.members.filter((m) => m.name !== target && cluster.isRunning(m.name));
    // Its log ends at or before what it said it held, or what the others hold (it may have led with entries they lack).
    const othersLast = await Promise.all(others.map((m) => metric(m.clientUrl, LAST_INDEX_METRIC)));
    const behind = Math.max(targetLast ?? 0, ...othersLast.map((x) => x ?? 0)) + LAST_INDEX_MARGIN;
    const compacted = await compactPast(others, behind);
    startMember(ctx, target);
    shared.down.delete(target);
    const restarted = performance.now();
    const commits = await Promise.all(others.map(async (m) => (await cluster.status(m.name))?.commitIndex ?? 0));
    const goal = Math.max(0, ...commits);
    const caught = await waitUntil(CATCH_UP_MS, async () => ((await cluster.status(target))?.appliedIndex ?? -1) >= goal);
    const caughtMs = since(restarted);
    const installs = await metric(spec.clientUrl, INSTALLS_METRIC);
    if (!caught) problem(ctx, `${target} was restarted behind the others' compacted logs and had not applied ${goal} ${CATCH_UP_MS} ms later`);
    if (compacted.ok && caught && installs === 0) {
      problem(ctx, `${target} came back behind the others' compacted logs (they start at ${compacted.first}, it held at most ${behind}) yet caught up without installing a snapshot`);
    }
    const compaction = compacted.ok
      ? `${compacted.fillerWrites} filler writes until the others' logs started at ${compacted.first} (past its last entry, at most ${behind}) in ${compacted.ms} ms`
      : `the others' logs did not get past ${behind} within ${COMPACT_BUDGET_MS} ms (they start at ${compacted.first})`;
    return {
      variant: 'lag', targets: [target], wasLeader: leading, forced: compacted.ok,
      detail: `lag ${target}${role}: SIGKILL; ${compaction}; restarted, ${caught ? `caught up in ${caughtMs} ms` : 'did NOT catch up'} by ${describeInstalls(installs)}`,
      ...(installs === null ? {} : { snapshotInstalls: installs }),
    };
  } finally {
    shared.down.delete(target);
    shared.busy.delete(target);
  }
}

/**
 * Write filler until every member in `members` has compacted its log past `index` (its first index
 * is above index + 1, so a follower whose log ends at `index` needs a snapshot). Bounded in time and writes.
 */
async function compactPast(members: readonly MemberSpec[], index: number): Promise<{ ok: boolean; first: number; fillerWrites: number; ms: number }> {
  const t0 = performance.now();
  let fillerWrites = 0;
  let first = 0;
  if (members.length === 0) return { ok: false, first, fillerWrites, ms: 0 };
  for (let round = 0; round < MAX_COMPACT_ROUNDS && performance.now() - t0 < COMPACT_BUDGET_MS; round++) {
    const firsts = await Promise.all(members.map((m) => metric(m.clientUrl, FIRST_INDEX_METRIC)));
    first = Math.min(...firsts.map((f) => f ?? 0));
    if (first > index + 1) return { ok: true, first, fillerWrites, ms: since(t0) };
    if (fillerWrites >= MAX_FILLER_WRITES) {
      await sleep(POLL_MS);
      continue;
    }
    const entry = members[round % members.length];
    const written = await Promise.all(Array.from({ length: FILLER_BATCH }, (_, i) => fill(entry, fillerWrites + i)));
    fillerWrites += FILLER_BATCH;
    if (!written.some(Boolean)) await sleep(POLL_MS);
  }
  return { ok: false, first, fillerWrites, ms: since(t0) };
}

async function fill(entry: MemberSpec, n: number): Promise<boolean> {
  try {
    return (await httpFollow('PUT', `${entry.clientUrl}/v1/kv/${FILLER_KEY}`, { body: `f${n}`, timeoutMs: REQUEST_TIMEOUT_MS })).status === 200;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------- helpers

interface Answer {
  /** 0: no HTTP answer (the text says why). */
  readonly status: number;
  readonly text: string;
}

/**
 * A Cluster API request, sent to the running members in turn (307s followed), retried while the
 * answer is a 503 (no leader; another change still committing), a 504 or no answer, within a budget.
 */
async function clusterRequest(ctx: FaultContext, method: string, path: string, body?: unknown, exclude?: string):
  Promise<{ answer: Answer; first: Answer; attempts: number; timedOut: number }> {
  const { cluster } = ctx.options;
  const t0 = performance.now();
  let answer: Answer = { status: 0, text: 'not sent: no member running' };
  let first: Answer | null = null;
  let attempts = 0;
  let timedOut = 0;
  while (attempts < MAX_CHANGE_ATTEMPTS && performance.now() - t0 < CHANGE_BUDGET_MS) {
    const entries = cluster.members.filter((m) => m.name !== exclude && cluster.isRunning(m.name));
    if (entries.length === 0) break;
    const entry = entries[attempts % entries.length];
    attempts++;
    answer = await send(method, `${entry.clientUrl}${path}`, body);
    first ??= answer;
    if (answer.status === 504 || (answer.status === 0 && answer.text !== 'ECONNREFUSED')) timedOut++;
    if (answer.status !== 0 && answer.status !== 503 && answer.status !== 504) break;
    await sleep(RETRY_MS);
  }
  return { answer, first: first ?? answer, attempts, timedOut };
}

async function send(method: string, url: string, body: unknown): Promise<Answer> {
  try {
    const r = await httpFollow(method, url, body === undefined
      ? { timeoutMs: REQUEST_TIMEOUT_MS }
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, timeoutMs: REQUEST_TIMEOUT_MS });
    return { status: r.status, text: r.body.toString('utf8').slice(0, 300) };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { status: 0, text: String(typeof e.code === 'string' ? e.code : e.message ?? err) };
  }
}

/** One unlabelled metric of a member (GET /metrics, Prometheus text), or null if it cannot be read. */
async function metric(clientUrl: string, name: string): Promise<number | null> {
  try {
    const r = await http('GET', `${clientUrl}/metrics`, { timeoutMs: REQUEST_TIMEOUT_MS });
    if (r.status !== 200) return null;
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(r.body.toString('utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

function describe(a: Answer): string {
  return `${a.status} ${a.text}`.slice(0, 200);
}

function describeInstalls(installs: number | null): string {
  if (installs === null) return `? snapshot installs (no ${INSTALLS_METRIC})`;
  return installs === 0 ? 'log entries alone' : `${installs} snapshot install${installs === 1 ? '' : 's'}`;
}

async function waitUntil(budgetMs: number, probe: () => Promise<boolean>): Promise<boolean> {
  const t0 = performance.now();
  for (let i = 0; i < MAX_POLLS && performance.now() - t0 < budgetMs; i++) {
    if (await probe()) return true;
    await sleep(POLL_MS);
  }
  return false;
}

function since(t0: number): number {
  return Math.round(performance.now() - t0);
}
