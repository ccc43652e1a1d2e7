import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { encodeCommand } from '../../src/kv/command.js';
import type { Command } from '../../src/kv/command.js';
import type { ConfigState, Entry } from '../../src/raft/types.js';
import { DEFAULT_WRITE_BUFFER_BYTES, LevelStorage } from '../../src/storage/level-storage.js';
import type { LevelStorageOptions } from '../../src/storage/level-storage.js';
import { ready, storeInTempDir } from '../support/level-store.js';

// LevelDB's write buffer is DEFAULT_WRITE_BUFFER_BYTES (16 MiB), not LevelDB's 4 MiB: applied
// writes stay in its memtable four times longer before a flush writes a table file (and starts
// the compactions that capped large-value writes). Shown on a real LevelDB: 5 MiB of values (and
// their history records) leave no table file with the default, and do with a small buffer.

const CONFIG: ConfigState = { voters: ['n1'], learners: [] };
const VALUE = Buffer.alloc(128 * 1024, 0x76);
const WRITES = 40; // 5 MiB of values

const t = storeInTempDir('write-buffer');

/** Opens a store, applies WRITES puts of VALUE, and waits until LevelDB has every batch. */
async function writeValues(options: LevelStorageOptions): Promise<string> {
  const member = join(t.dir, 'member');
  const storage = (t.storage = await LevelStorage.open(member, options));
  await storage.bootstrap(CONFIG);
  for (let i = 1; i <= WRITES; i++) {
    const command = { op: 'put', requestId: `r${i}`, key: `k${i % 8}`, value: VALUE } as Command;
    const e: Entry = { index: i, term: 1, type: 'normal', data: encodeCommand(command) };
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: i - 1 }, entries: [e] }));
    await storage.persist(ready({ committed: [e], mustSync: false }));
  }
  await storage.list({ prefix: '', limit: 1 }); // waits for every applied batch to be in LevelDB
  return join(member, 'db');
}

async function tableFiles(db: string): Promise<string[]> {
  return (await readdir(db)).filter((f) => f.endsWith('.ldb') || f.endsWith('.sst'));
}

describe('LevelDB write buffer', () => {
  test('the default is 16 MiB: 5 MiB of applied values stay in the memtable', async () => {
    expect(DEFAULT_WRITE_BUFFER_BYTES).toBe(16 * 1024 * 1024);
    const db = await writeValues({});
    await new Promise((r) => setTimeout(r, 300)); // room for a flush, were one started
    expect(await tableFiles(db)).toEqual([]);
  });

  test('a smaller buffer is honoured: the same writes flush table files', async () => {
    const db = await writeValues({ writeBufferBytes: 1024 * 1024 });
    let files: string[] = [];
    for (let i = 0; i < 100 && files.length === 0; i++) {
      files = await tableFiles(db);
      if (files.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(files.length).toBeGreaterThan(0);
  });

  test('a buffer under 64 KiB is refused', async () => {
    await expect(LevelStorage.open(join(t.dir, 'bad'), { writeBufferBytes: 1000 })).rejects.toThrow(/writeBufferBytes/);
  });
});
