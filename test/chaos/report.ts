/**
 * What a failed chaos run (not linearizable, a member crashed, the cluster did not recover) leaves behind, in a fresh directory under the OS temp dir:
 *   - history.json, window.json, timeline.html: the checker's report (checker/render-html.ts): the
 *     whole history (HistoryRecorder.fromJSON re-reads it, to re-check offline), the verdict per key
 *     with the smallest failing window, and that window as an HTML timeline;
 *   - run.json: this run's figures, the faults injected (on the history's clock) and the replay command;
 *   - faults.html: the failing window again, with the faults under way drawn as bands behind it;
 *   - n1.log, n2.log, n3.log: the members' recent log lines.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckResult } from './checker/linearizability.js';
import { describeOperation, type Operation } from './checker/history.js';
import { writeFailureReport } from './checker/render-html.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import type { ChaosFigures } from './run-chaos.js';
import type { FaultEvent } from './nemesis.js';

export interface ChaosFailure {
  readonly figures: ChaosFigures;
  readonly check: CheckResult;
  readonly history: readonly Operation[];
  readonly cluster?: ProcessCluster;
  readonly problems?: readonly string[];
}

/** Writes the report and returns its directory. */
export async function writeChaosFailure(failure: ChaosFailure): Promise<string> {
  const { figures, check, history, cluster, problems } = failure;
  const dir = await mkdtemp(join(tmpdir(), `flotilla-chaos-${figures.seed}-`));
  await writeFailureReport(dir, check, history);
  await writeFile(join(dir, 'run.json'), JSON.stringify({
    problems: problems ?? [], figures, replay: `FLOTILLA_SEED=${figures.seed} npx vitest run test/chaos`,
  }, null, 2));
  await writeFile(join(dir, 'faults.html'), renderWindowHtml(figures, check, history));
  if (cluster !== undefined) {
    for (const m of cluster.members) await writeFile(join(dir, `${m.name}.log`), cluster.logs(m.name));
  }
  return dir;
}

/** The ops to draw: the failing window, or (a timeout, no window) the tail of the first undecided key. */
function windowOps(check: CheckResult, history: readonly Operation[]): { key: string; ops: readonly Operation[]; stuck?: Operation } {
  if (check.failure !== undefined) return { key: check.failure.key, ops: check.failure.window, stuck: check.failure.stuck };
  const key = Object.values(check.perKey).find((v) => v.verdict !== 'linearizable')?.key ?? '';
  return { key, ops: history.filter((o) => o.key === key).slice(-40) };
}

const LANE_PX = 34;
const WIDTH_PX = 1100;
const LEFT_PX = 60;

export function renderWindowHtml(figures: ChaosFigures, check: CheckResult, history: readonly Operation[]): string {
  const { key, ops, stuck } = windowOps(check, history);
  const lastComplete = Math.max(...ops.map((o) => o.completeMs ?? o.invokeMs));
  const t0 = Math.min(...ops.map((o) => o.invokeMs));
  const t1 = Math.max(t0 + 1, lastComplete + (lastComplete - t0) * 0.1 + 1);
  const x = (t: number): number => LEFT_PX + ((Math.min(t, t1) - t0) / (t1 - t0)) * (WIDTH_PX - LEFT_PX - 10);
  const clients = [...new Set(ops.map((o) => o.client))].sort((a, b) => a - b);
  const lane = new Map(clients.map((c, i) => [c, i]));
  const height = clients.length * LANE_PX + 40;
  const faults = figures.nemesis.faults.filter((f) => f.endMs >= t0 && f.startMs <= t1);
  const bars = ops.map((o) => {
    const y = 20 + (lane.get(o.client) ?? 0) * LANE_PX;
    const end = o.completeMs ?? t1;
    const cls = o === stuck || o.id === stuck?.id ? 'stuck' : o.outcome;
    return `<g class="${cls}"><rect x="${x(o.invokeMs).toFixed(1)}" y="${y}" width="${Math.max(2, x(end) - x(o.invokeMs)).toFixed(1)}" height="${LANE_PX - 8}" rx="3">` +
      `<title>${escapeHtml(describeOperation(o))}\ninvoked ${(o.invokeMs - t0).toFixed(1)} ms, ${o.completeMs === null ? 'never completed' : `completed ${(o.completeMs - t0).toFixed(1)} ms`}</title></rect>` +
      `<text x="${(x(o.invokeMs) + 3).toFixed(1)}" y="${y + 17}">#${o.id} ${escapeHtml(shortCall(o))}</text></g>`;
  }).join('\n');
  const bands = faults.map((f) => `<rect class="fault" x="${x(Math.max(f.startMs, t0)).toFixed(1)}" y="0" width="${Math.max(2, x(f.endMs) - x(Math.max(f.startMs, t0))).toFixed(1)}" height="${height}"><title>${escapeHtml(f.detail)}</title></rect>`).join('\n');
  const laneLabels = clients.map((c) => `<text class="lane" x="4" y="${20 + (lane.get(c) ?? 0) * LANE_PX + 17}">c${c}</text>`).join('\n');
  const rows = ops.map((o) => `<tr class="${o.id === stuck?.id ? 'stuck' : o.outcome}"><td>${(o.invokeMs - t0).toFixed(1)}</td><td>${o.completeMs === null ? '—' : (o.completeMs - t0).toFixed(1)}</td><td>${escapeHtml(describeOperation(o))}</td></tr>`).join('\n');
  const f = check.failure;
  const message = f?.message ?? Object.values(check.perKey).find((v) => v.message)?.message ?? '';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>flotilla chaos: ${escapeHtml(check.verdict)} (seed ${figures.seed})</title>
<style>
body{font:14px system-ui,sans-serif;margin:20px;color:#222} code{background:#f3f3f3;padding:1px 4px}
svg text{font:11px monospace;pointer-events:none} svg text.lane{font-weight:bold}
.ok rect{fill:#cfe8cf;stroke:#3a7a3a} .fail rect{fill:#eee;stroke:#999} .unknown rect{fill:#fff3c4;stroke:#b08800;stroke-dasharray:4 2}
.stuck rect{fill:#f6c6c6;stroke:#b00000;stroke-width:2} rect.fault{fill:#b0c4ff;opacity:.25}
table{border-collapse:collapse;margin-top:16px} td{padding:2px 8px;border-bottom:1px solid #eee;font-family:monospace}
tr.stuck td{background:#fde0e0} tr.unknown td{background:#fffbe6} tr.fail td{color:#888}
</style></head><body>
<h1>${escapeHtml(check.verdict)}: key <code>${escapeHtml(key)}</code></h1>
<p>${escapeHtml(message)}</p>
<p>Seed ${figures.seed} (${escapeHtml(figures.label)}); replay the schedule with <code>FLOTILLA_SEED=${figures.seed} npx vitest run test/chaos</code>.
${f ? `Window: ${f.window.length} ops${f.selfContained ? ', non-linearizable whatever the key held before it' : ` from state ${escapeHtml(JSON.stringify(f.startState))}`}${f.omittedUnknownOps ? `, ${f.omittedUnknownOps} older unknown-outcome ops left out` : ''}.` : ''}
Times in ms from the window's first invocation; blue bands are faults; dashed bars never completed (unknown outcome); red is the op that cannot be linearized.</p>
<svg width="${WIDTH_PX}" height="${height}" xmlns="http://www.w3.org/2000/svg">
${bands}
${laneLabels}
${bars}
</svg>
<h2>Faults during the window</h2>
<ul>${faults.map((x2) => `<li>${(x2.startMs - t0).toFixed(0)}–${(x2.endMs - t0).toFixed(0)} ms: ${escapeHtml(x2.detail)}</li>`).join('') || '<li>none</li>'}</ul>
<h2>Operations</h2>
<table><tr><th>invoked</th><th>completed</th><th>operation</th></tr>
${rows}
</table>
</body></html>
`;
}

function shortCall(o: Operation): string {
  if (o.kind === 'get') return o.outcome === 'ok' ? `get → ${o.output.value === null ? '404' : o.output.value}` : 'get';
  if (o.kind === 'cas') return `cas ${o.input.ifMatch} ${o.input.value}`;
  return o.input.value === undefined ? o.kind : `${o.kind} ${o.input.value}`;
}

function escapeHtml(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

export type { FaultEvent };
