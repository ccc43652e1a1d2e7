/**
 * docs/chaos.md: what the chaos suite does, and one row per long run (appended by `make chaos`).
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO } from '../support/process-cluster.js';
import { forcedSnapshots, type ChaosResult } from './run-chaos.js';

export const CHAOS_DOC = join(REPO, 'docs/chaos.md');
const TABLE_MARKER = '<!-- chaos runs: `make chaos` appends a row below -->';
const TABLE_HEADER = [
  '| date (UTC) | nemesis | seed | minutes | snapshots | ops | ok | failed | unknown | faults injected | final reads | verdict | check time |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
].join('\n');

const INTRO = `# Chaos runs

flotilla's chaos suite (\`test/chaos/\`) starts three real \`flotilla serve\` processes on
127.0.0.11–13, drives 5 concurrent clients against them (each request to a random member, 307s
followed; 40% GET, 20% PUT of a unique value, 20% compare-and-set with \`If-Match\` on the last ETag
the client saw, 10% create with \`If-None-Match: *\`, 10% DELETE, on 4 keys), injects faults on a
schedule drawn from a seed, and checks the recorded history for linearizability, key by key. Every
operation is recorded as ok, failed (certainly not applied: connection refused, or a 503 flotilla
documents as not applied — \`NO_LEADER\`, \`LEADER_CHANGED\`, \`OVERLOADED\`, \`SHUTTING_DOWN\`) or
unknown (a timeout, a dropped connection, a 504 or another 503 on a write: it may or may not have
happened, at any time after it was sent). After the last fault, one more client reads every key
linearizably: that pins the final state (no acknowledged write lost) and shows the cluster is live.

Members run with a 500 ms election timeout, 50 ms heartbeats, \`--request-timeout 2000\` and a tiny
snapshot threshold, \`--snapshot-entries 200\` keeping 20 entries (\`FLOTILLA_CHAOS_SNAPSHOT_ENTRIES\`
changes it; the catch-up tail is a tenth), so every run compacts the log again and again and a member
that was down, paused or cut off often catches up by InstallSnapshot. The *snapshots* column counts
what the members' logs show, and for the snapshot nemesis how many of the members it brought back
behind the others' compacted logs installed a snapshot (their \`flotilla_snapshots_installed_total\`).
A member that exits without being killed fails the run, with its exit code and last log lines.

Nemeses (one fault at a time, each healed before the next; the target is the leader half the time):

- **kill**: SIGKILL a member, restart it from its data dir 0.3–2 s later; 18% of the time two
  members at once, 12% all three (acknowledged writes must survive a whole-cluster crash);
- **pause**: SIGSTOP a member (15% of the time two) for 1–3 s (longer than the 0.5–1 s election
  timeout), then SIGCONT;
- **partition**: cut one member off from the other two with iptables, half the time from the
  clients too, or (15%) cut only the link between two members, both still reaching the third; for
  1–4 s. The rules live in a chain of the suite's own, \`FLOTILLA_CHAOS_<pid>_<n>\`, entered from
  OUTPUT only for loopback traffic and always removed. Members connect from their own address
  (\`test/chaos/bind-source.mjs\`), so a rule can name who sends. Where iptables is not usable (or
  \`FLOTILLA_CHAOS_IPTABLES=off\`) the suite prints why and runs the other nemeses;
- **membership**: changes the membership through the Cluster API while the clients run, one change
  at a time, and only when all three members run and are voters (a change refused with 503 is
  retried). Mostly (always first) it replaces a member the way an operator replaces a dead one:
  \`DELETE /v1/cluster/members/<name>\` (the leader half of the time: it must step down as soon as
  its removal commits), half the time leaves the removed member running 0.5–2.5 s, stops it, wipes
  its data dir and starts it under the same name and ports as a new member,
  \`serve --join <a live member's client URL>\`; done when the leader lists it as a voter again.
  Otherwise (35%) it hands leadership to a follower with \`POST /v1/cluster/leader\`. Clients keep
  using the same URLs; while a member is out they get refused connections. The run fails if a
  removal times out (504) with no other fault under way, a removed leader still leads, a removed
  member left running claims to lead or pushes the others' term up, or a joined member is not a
  voter 30 s later. (It found that a leader could not commit its own removal: the followers dropped
  their link to it as soon as they appended the change, so the DELETE hung until the leader lost
  its quorum and answered 504.)
- **snapshot**: forces InstallSnapshot. It SIGKILLs a member (the leader half the time), writes filler
  to a key the workload never uses until both others' logs start past the last entry the stopped
  member can hold (their \`flotilla_raft_first_index\`), and restarts it, so a snapshot is its only way
  back; 25% of the time it instead wipes a follower and re-adds it with \`--join\` once the log has
  been compacted. Each such member must catch up within 20 s and its
  \`flotilla_snapshots_installed_total\` must show the install.

Long runs rotate to fresh keys every minute, so each key's history stays small enough to check
exhaustively. The suite also proves the checker bites: the same workload with reads sent as
\`?consistency=stale\` to followers while they are cut off or paused must be reported non-linearizable
(the row marked *stale reads* below; its verdict is the expected one).

- \`make test\` runs the short version (about three minutes: 25 s per nemesis, plus the stale-read run).
- \`make chaos\` runs \`FLOTILLA_CHAOS=long npx vitest run test/chaos\`: \`FLOTILLA_CHAOS_MINUTES\`
  (default 10) per nemesis, and appends a row here per run. \`FLOTILLA_CHAOS_NEMESES\` chooses the
  runs (default \`kill,pause,partition,membership,snapshot\`); \`mixed\` is kill, pause and partition
  in two overlapping fault streams (a kill can land while another member is paused or cut off),
  faults coming faster.
- A short run replays its schedule (the faults and every client's choices; not the machine's
  timing) with \`FLOTILLA_SEED=<seed> npx vitest run test/chaos\`; a row below with
  \`FLOTILLA_CHAOS=long FLOTILLA_CHAOS_NEMESES=<nemesis> FLOTILLA_SEED=<seed> npx vitest run test/chaos\`.
  A violation, a crashed member or a cluster that does not recover writes the history, the smallest
  failing window as an HTML timeline (\`timeline.html\`; \`faults.html\` adds the faults under way),
  the figures and the members' logs to a directory under the OS temp dir, and prints its path.

`;

export async function appendChaosDoc(result: ChaosResult, options: { expectViolation?: boolean } = {}): Promise<void> {
  const f = result.figures;
  const w = f.workload;
  const faults = Object.entries(f.nemesis.byKind).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
  const skipped = Object.entries(f.nemesis.skipped).map(([k, why]) => `${k} skipped: ${why}`).join('; ');
  const a = f.anomalies;
  const counted = `${a.lostWrites} lost writes, ${a.staleReads} stale reads`;
  const verdict = options.expectViolation
    ? `${result.check.verdict} (expected: stale reads; ${counted})`
    : `${result.check.verdict} (${counted})${result.problems.length > 0 ? `; ${result.problems.join('; ')}` : ''}${result.reportDir ? ` — report ${result.reportDir}` : ''}`;
  const row = [
    new Date().toISOString().slice(0, 16).replace('T', ' '),
    f.label, String(f.seed), (f.durationMs / 60_000).toFixed(1), `every ${f.snapshotEntries} entries: ${f.snapshots.compactions} compactions, ${f.snapshots.installs} installs${forcedSnapshots(f)}`, String(w.ops), String(w.byOutcome.ok), String(w.byOutcome.fail),
    String(w.byOutcome.unknown), faults + (skipped ? ` (${skipped})` : ''), `${f.finalReads.ok}/${f.finalReads.keys}`, verdict,
    `${(f.checkMs / 1000).toFixed(1)} s`,
  ].map((cell) => cell.replaceAll('|', '\\|')).join(' | ');
  await writeChaosDoc([`| ${row} |`]);
}

/** Rewrites docs/chaos.md: the text above the table as it is now, the rows kept, `more` appended. */
export async function writeChaosDoc(more: readonly string[] = []): Promise<void> {
  const old = existsSync(CHAOS_DOC) ? await readFile(CHAOS_DOC, 'utf8') : '';
  const at = old.indexOf(TABLE_MARKER);
  const rows = at < 0 ? [] : old.slice(at).split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| date'));
  await writeFile(CHAOS_DOC, `${INTRO}${TABLE_MARKER}\n\n${TABLE_HEADER}\n${[...rows, ...more].join('\n')}\n`);
}
