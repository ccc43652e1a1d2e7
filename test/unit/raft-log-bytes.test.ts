import { describe, expect, test } from 'vitest';
import { RaftLog } from '../../src/raft/raft-log.js';
import type { Entry } from '../../src/raft/types.js';
import { ConfigError, loadServeConfig } from '../../src/config/load.js';

const REQUIRED = ['--name', 'n1', '--data-dir', '/tmp/x', '--listen-client-url', 'http://127.0.0.1:2379', '--listen-peer-url', 'http://127.0.0.1:12380'];

function log(sizes: number[], after = 10): RaftLog {
  const entries: Entry[] = sizes.map((n, i) => ({ index: after + 1 + i, term: 2, type: 'normal', data: new Uint8Array(n) }));
  return new RaftLog({ index: after, term: 1, config: { voters: ['n1'], learners: [] } }, entries, after + sizes.length, after + sizes.length);
}

describe('compaction by bytes', () => {
  test('indexKeepingTailBytes keeps at most maxBytes of entries before hi', () => {
    // entries 11..15 of 100, 200, 300, 400, 500 bytes
    const l = log([100, 200, 300, 400, 500]);
    expect(l.bytes()).toBe(1500);
    expect(l.indexKeepingTailBytes(15, 500)).toBe(14); // keeps only 15
    expect(l.indexKeepingTailBytes(15, 900)).toBe(13); // keeps 14, 15
    expect(l.indexKeepingTailBytes(15, 899)).toBe(14);
    expect(l.indexKeepingTailBytes(15, 1500)).toBe(10); // everything fits: the snapshot index
    expect(l.indexKeepingTailBytes(13, 500)).toBe(11); // keeps 12, 13 (hi below the end)
    expect(l.indexKeepingTailBytes(15, 0)).toBe(15); // keeps nothing
    l.compact({ index: 13, term: 2, config: { voters: ['n1'], learners: [] } });
    expect(l.bytes()).toBe(900);
    expect(l.indexKeepingTailBytes(15, 400)).toBe(15); // entry 15 alone is more than 400
    expect(l.indexKeepingTailBytes(15, 500)).toBe(14);
  });

  test('--snapshot-bytes: default 64 MiB, settable, at least 1 KiB', () => {
    expect(loadServeConfig(REQUIRED, {}).snapshotBytes).toBe(64 * 1024 * 1024);
    expect(loadServeConfig([...REQUIRED, '--snapshot-bytes', '1048576'], {}).snapshotBytes).toBe(1048576);
    expect(loadServeConfig(REQUIRED, { FLOTILLA_SNAPSHOT_BYTES: '4096' }).snapshotBytes).toBe(4096);
    expect(() => loadServeConfig([...REQUIRED, '--snapshot-bytes', '10'], {})).toThrow(ConfigError);
    expect(() => loadServeConfig([...REQUIRED, '--snapshot-bytes', 'lots'], {})).toThrow(ConfigError);
  });
});
