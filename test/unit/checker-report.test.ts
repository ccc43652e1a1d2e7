import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { HistoryRecorder } from '../chaos/checker/history.js';
import { HistoryBuilder } from '../chaos/checker/history-builder.js';
import { checkLinearizability } from '../chaos/checker/linearizability.js';
import { renderTimelineHtml, writeFailureReport } from '../chaos/checker/render-html.js';

function staleReadHistory(): { ops: ReturnType<HistoryBuilder['ops']>; culprits: number[] } {
  const h = new HistoryBuilder();
  h.put(0, [0, 1], 'A', 2);
  h.get(3, [0.5, 1.5], 'A', 2);
  const putB = h.put(1, [2, 3], 'B', 5);
  h.put(3, [2.5, null], 'never <seen> & "quoted"');
  const stale = h.get(2, [4, 5], 'A', 2);
  h.forKey('elsewhere').put(4, [0, 9], 'Z', 3);
  return { ops: h.ops(), culprits: [putB, stale] };
}

describe('failure reports', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  test('writes history, window and a timeline with one lane per client and the window highlighted', async () => {
    const { ops, culprits } = staleReadHistory();
    const result = checkLinearizability(ops);
    expect(result.verdict).toBe('not-linearizable');
    dir = await mkdtemp(join(tmpdir(), 'flotilla-checker-'));
    const paths = await writeFailureReport(join(dir, 'report'), result, ops);

    const html = await readFile(paths.timelinePath, 'utf8');
    const lanes = [...html.matchAll(/<div class="lane" data-client="(\d+)"/g)].map((m) => Number(m[1]));
    expect(lanes).toEqual([0, 1, 2, 3, 4]);
    for (const id of result.failure?.window.map((o) => o.id) ?? []) {
      expect(html).toMatch(new RegExp(`class="[^"]*in-window[^"]*" data-op-id="${id}"`));
    }
    expect(result.failure?.window.map((o) => o.id)).toEqual(expect.arrayContaining(culprits));
    expect(html).toMatch(/outcome-unknown/);
    expect(html).not.toMatch(/<script|<link|src=|href=/);
    expect(html).toContain('never &#60;seen&#62; &#38; ');
    expect(html).not.toContain('<seen>');

    const window = JSON.parse(await readFile(paths.windowPath, 'utf8'));
    expect(window.failure.window.map((o: { id: number }) => o.id)).toEqual(result.failure?.window.map((o) => o.id));
    const reloaded = HistoryRecorder.fromJSON(await readFile(paths.historyPath, 'utf8'));
    expect(reloaded.operations).toEqual(ops);
  });

  test('a linearizable result renders a summary instead of a window', () => {
    const h = new HistoryBuilder();
    h.put(0, [0, 1], 'A', 2);
    const html = renderTimelineHtml(h.ops(), checkLinearizability(h.ops()));
    expect(html).toContain('<h1>Linearizable</h1>');
    expect(html).not.toContain('class="lane"');
  });
});
