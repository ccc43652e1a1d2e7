/**
 * Failure reports a person can read: a self-contained HTML timeline (no scripts, no external assets)
 * of the failing key around its smallest non-linearizable window, and the JSON behind it.
 *
 * One lane per client; each op is a bar from invocation to completion. An op of unknown outcome has
 * no end, so its bar runs dashed to the right edge on a row of its own below the lane's main row.
 * The ops of the window are highlighted.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeOperation, historyToJson, type Operation } from './history.js';
import type { CheckResult, FailureWindow } from './linearizability.js';

/** Ops drawn around the window; the rest of the history is in history.json. */
const MAX_RENDERED_OPS = 400;
/** Unknown-outcome ops get a row each, up to this many per lane; then they share the last. */
const MAX_UNKNOWN_ROWS = 6;
/** Share of the window's span shown on each side of it, for context. */
const CONTEXT_FRACTION = 0.5;
const MIN_CONTEXT_MS = 1;
const ROW_PX = 22;
const MIN_BAR_PERCENT = 0.4;

export interface ReportPaths {
  readonly historyPath: string;
  readonly windowPath: string;
  readonly timelinePath: string;
}

/** Writes history.json, window.json and timeline.html into `dir` (created if missing). */
export async function writeFailureReport(dir: string, result: CheckResult, history: readonly Operation[]): Promise<ReportPaths> {
  await mkdir(dir, { recursive: true });
  const paths = {
    historyPath: join(dir, 'history.json'),
    windowPath: join(dir, 'window.json'),
    timelinePath: join(dir, 'timeline.html'),
  };
  await writeFile(paths.historyPath, `${JSON.stringify(historyToJson(history))}\n`);
  await writeFile(paths.windowPath, `${JSON.stringify(windowJson(result), null, 2)}\n`);
  await writeFile(paths.timelinePath, renderTimelineHtml(history, result));
  return paths;
}

function windowJson(result: CheckResult): object {
  return { verdict: result.verdict, failure: result.failure ?? null, perKey: result.perKey };
}

export function renderTimelineHtml(history: readonly Operation[], result: CheckResult): string {
  const clients = [...new Set(history.map((o) => o.client))].sort((a, b) => a - b);
  const failure = result.failure;
  const body = failure === undefined ? summaryHtml(result) : failureHtml(history, failure, clients);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>flotilla linearizability: ${escapeHtml(result.verdict)}</title>
<style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(headline(result))}</h1>
${body}
</body></html>
`;
}

function headline(result: CheckResult): string {
  if (result.failure !== undefined) return `Not linearizable: key ${JSON.stringify(result.failure.key)}`;
  return result.verdict === 'timeout' ? 'Undecided: the checker ran out of budget' : 'Linearizable';
}

function summaryHtml(result: CheckResult): string {
  const rows = Object.values(result.perKey).map((k) => {
    const message = k.message === undefined ? '' : ` — ${escapeHtml(k.message)}`;
    return `<li><code>${escapeHtml(JSON.stringify(k.key))}</code>: ${escapeHtml(k.verdict)}${message}</li>`;
  });
  return `<p>No failure window to show.</p><ul>${rows.join('')}</ul>`;
}

interface TimeRange {
  readonly fromMs: number;
  readonly toMs: number;
}

function failureHtml(history: readonly Operation[], failure: FailureWindow, clients: readonly number[]): string {
  const windowIds = new Set(failure.window.map((o) => o.id));
  const range = timeRange(failure.window);
  const shown = opsToShow(history, failure.key, range, windowIds);
  const lanes = clients.map((c) => laneHtml(c, shown.filter((o) => o.client === c), range, windowIds));
  return `<p class="message">${escapeHtml(failure.message)}</p>
<p>The window of ${failure.window.length} ops (highlighted) cannot be linearized from the state
<code>${escapeHtml(JSON.stringify(failure.startState))}</code>${failure.selfContained
    ? ', nor from any state the key held before it' : ''}.
${failure.omittedUnknownOps > 0 ? `${failure.omittedUnknownOps} older unknown-outcome ops are not shown in it. ` : ''}
Showing ${shown.length} ops of this key from ${formatMs(range.fromMs)} to ${formatMs(range.toMs)} ms.
Dashed bars: outcome unknown, no end.</p>
<div class="timeline">
${lanes.join('\n')}
</div>
<h2>Window</h2>
<ol>${failure.window.map((o) => `<li data-op-id="${o.id}">${escapeHtml(describeOperation(o))}</li>`).join('')}</ol>
<pre class="json">${escapeHtml(JSON.stringify(failure.window, null, 2))}</pre>
<h2>Longest linearizable prefix (op ids, in order)</h2>
<pre class="json">${escapeHtml(JSON.stringify(failure.partialLinearizations))}</pre>`;
}

function timeRange(window: readonly Operation[]): TimeRange {
  const fromMs = Math.min(...window.map((o) => o.invokeMs));
  const toMs = Math.max(...window.map((o) => o.completeMs ?? o.invokeMs));
  const context = Math.max(MIN_CONTEXT_MS, (toMs - fromMs) * CONTEXT_FRACTION);
  return { fromMs: fromMs - context, toMs: toMs + context };
}

/** The key's ops overlapping the range, nearest the window first when there are too many. */
function opsToShow(history: readonly Operation[], key: string, range: TimeRange, windowIds: ReadonlySet<number>): Operation[] {
  const center = (range.fromMs + range.toMs) / 2;
  // An unknown-outcome op never ends, so only recent ones (or the window's own) are worth a row.
  const overlapping = history.filter((o) => o.key === key && o.invokeMs <= range.toMs &&
    (o.completeMs === null ? o.invokeMs >= range.fromMs || windowIds.has(o.id) : o.completeMs >= range.fromMs));
  const distance = (o: Operation): number => (windowIds.has(o.id) ? -1 : Math.abs(o.invokeMs - center));
  return overlapping.sort((a, b) => distance(a) - distance(b)).slice(0, MAX_RENDERED_OPS).sort((a, b) => a.invokeMs - b.invokeMs);
}

function laneHtml(client: number, ops: readonly Operation[], range: TimeRange, windowIds: ReadonlySet<number>): string {
  let unknownRow = 0;
  const bars = ops.map((o) => {
    const row = o.completeMs === null ? Math.min(++unknownRow, MAX_UNKNOWN_ROWS) : 0;
    return barHtml(o, row, range, windowIds.has(o.id));
  });
  const rows = 1 + Math.min(unknownRow, MAX_UNKNOWN_ROWS);
  return `<div class="lane" data-client="${client}"><div class="lane-label">client ${client}</div>` +
    `<div class="track" style="height:${rows * ROW_PX}px">${bars.join('')}</div></div>`;
}

function barHtml(op: Operation, row: number, range: TimeRange, inWindow: boolean): string {
  const span = range.toMs - range.fromMs;
  const left = clampPercent(((op.invokeMs - range.fromMs) / span) * 100);
  const right = op.completeMs === null ? 100 : clampPercent(((op.completeMs - range.fromMs) / span) * 100);
  const width = Math.max(MIN_BAR_PERCENT, right - left);
  const classes = ['op', `kind-${op.kind}`, `outcome-${op.outcome}`, ...(inWindow ? ['in-window'] : [])].join(' ');
  const label = describeOperation(op);
  return `<div class="${classes}" data-op-id="${op.id}" title="${escapeHtml(label)}" ` +
    `style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%;top:${row * ROW_PX}px">${escapeHtml(label)}</div>`;
}

function clampPercent(p: number): number {
  return Math.min(100, Math.max(0, p));
}

function formatMs(ms: number): string {
  return ms.toFixed(3);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.message { background: #fff3f3; border-left: 4px solid #c62828; padding: .5em .8em; }
.timeline { border: 1px solid #ccc; padding: 4px 0; }
.lane { display: flex; border-bottom: 1px solid #eee; }
.lane-label { width: 6em; flex: none; padding: 2px 6px; color: #555; font-size: 12px; }
.track { position: relative; flex: 1; }
.op { position: absolute; height: ${ROW_PX - 4}px; box-sizing: border-box; overflow: hidden; white-space: nowrap;
  font: 11px/${ROW_PX - 6}px ui-monospace, monospace; padding: 0 3px; border: 1px solid #90a4ae;
  background: #eceff1; border-radius: 3px; }
.outcome-unknown { border-style: dashed; border-right: none; background: linear-gradient(90deg, #fff8e1, transparent); }
.outcome-fail { opacity: .45; text-decoration: line-through; }
.kind-get { background-color: #e3f2fd; } .kind-put { background-color: #e8f5e9; }
.kind-cas { background-color: #f3e5f5; } .kind-create { background-color: #fffde7; } .kind-delete { background-color: #fbe9e7; }
.in-window { border: 2px solid #c62828; font-weight: bold; z-index: 1; }
.in-window.outcome-unknown { border-style: dashed; border-right: none; }
.json { background: #f7f7f7; padding: .6em; overflow: auto; max-height: 30em; font-size: 12px; }
`;
