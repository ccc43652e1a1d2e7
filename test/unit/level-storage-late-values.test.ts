import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { encodeCommand } from '../../src/kv/command.js';
import type { Command } from '../../src/kv/command.js';
import type { ConfigState, Entry } from '../../src/raft/types.js';
import { LevelStorage } from '../../src/storage/level-storage.js';
import { ready, storeInTempDir } from '../support/level-store.js';

// Applied records and history records are encoded when LevelDB takes the batch, into one buffer
// kept from batch to batch (LevelStorage's LateValue; the binding copies every value before the
// call returns). Shown on a real LevelDB: values of every size, in batches that reuse, grow and
// overflow that buffer (4 MiB), read back byte for byte after a reopen, from the keys and from
// the history.

const CONFIG: ConfigState = { voters: ['n1'], learners: [] };
const MiB = 1024 * 1024;
/** One Ready per row: the sizes of the values it applies. */
const BATCHES: readonly (readonly number[])[] = [
  [1, 100, 64 * 1024],
  [3 * MiB, 10], // grows the buffer
  [200, 0, 7], // reuses it: shorter values over longer ones
  [5 * MiB], // more than the buffer keeps: a buffer of its own
  [2 * MiB, 2 * MiB, 1], // the values of one batch beyond the kept size together
  [64 * 1024, 64 * 1024, 64 * 1024],
];

const t = storeInTempDir('late-values');

/** A value of `size` bytes whose content names it (no two values share their bytes). */
function valueOf(n: number, size: number): Buffer {
  const v = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) v[i] = (n * 31 + i * 7) & 0xff;
  return v;
}

describe('late-encoded LevelDB values', () => {
  test('values of every size land whole, in the keys and in the history', async () => {
    const member = join(t.dir, 'member');
    const storage = (t.storage = await LevelStorage.open(member));
    await storage.bootstrap(CONFIG);
    const written = new Map<string, Buffer>();
    const events: { key: string; value: Buffer }[] = [];
    let index = 0;
    for (const sizes of BATCHES) {
      const entries: Entry[] = sizes.map((size) => {
        index++;
        // Some keys are written twice, so a record replaces one of another size.
        const key = `k${index % 9}`;
        const value = valueOf(index, size);
        written.set(key, value);
        events.push({ key, value });
        const command = { op: 'put', requestId: `r${index}`, key, value } as Command;
        return { index, term: 1, type: 'normal', data: encodeCommand(command) };
      });
      await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: index - sizes.length }, entries }));
      await storage.persist(ready({ committed: entries, mustSync: false }));
    }
    t.storage = null;
    await storage.close();
    const reopened = (t.storage = await LevelStorage.open(member)); // reads now come from LevelDB alone
    await reopened.load();

    for (const [key, value] of written) {
      const record = await reopened.get(key);
      expect(record?.value.byteLength, key).toBe(value.byteLength);
      expect(Buffer.compare(Buffer.from(record!.value), value), key).toBe(0);
    }
    const history = await reopened.readHistory({ fromRevision: 1, key: '', prefix: true, limit: 1000 });
    const puts = history.events.filter((e) => e.key.startsWith('k'));
    expect(puts.map((e) => e.key)).toEqual(events.map((e) => e.key));
    for (let i = 0; i < puts.length; i++) {
      expect(Buffer.compare(Buffer.from(puts[i].value), events[i].value), `event ${i + 1}`).toBe(0);
    }
  });
});
