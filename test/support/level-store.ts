// Shared set-up for tests of LevelStorage on a real LevelDB in temp dirs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { Ready } from '../../src/raft/ready.js';
import type { LevelStorage } from '../../src/storage/level-storage.js';

/** A Ready holding only `parts`. */
export function ready(parts: Partial<Ready>): Ready {
  return { softState: null, hardState: null, entries: [], snapshot: null, messages: [], committed: [], readStates: [], mustSync: true, ...parts };
}

/**
 * A fresh temp dir for each test of the file, and the store a test opens in it (set `storage`):
 * closed and removed after the test.
 */
export function storeInTempDir(label: string): { dir: string; storage: LevelStorage | null } {
  const state: { dir: string; storage: LevelStorage | null } = { dir: '', storage: null };
  beforeEach(async () => {
    state.dir = await mkdtemp(join(tmpdir(), `flotilla-${label}-`));
  });
  afterEach(async () => {
    await state.storage?.close();
    state.storage = null;
    await rm(state.dir, { recursive: true, force: true });
  });
  return state;
}
