import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command } from '../../src/kv/command.js';
import { InvalidArgumentError } from '../../src/kv/errors.js';
import type { Ready } from '../../src/raft/ready.js';
import type { ConfigState, Entry } from '../../src/raft/types.js';
import { LevelStorage } from '../../src/storage/level-storage.js';

// The synchronous point read (getSync, which get() wraps): it must see whole batches and one
// generation of the state machine, also while an install switches generations and clears the old one.

const CONFIG: ConfigState = { voters: ['n1'], learners: [], peerUrls: { n1: 'http://127.0.0.1:12380' } };
const KEYS = 3000;

let dir: string;
const open: LevelStorage[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-reads-'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

async function newStore(name: string): Promise<LevelStorage> {
  const storage = await LevelStorage.open(join(dir, name));
  open.push(storage);
  await storage.bootstrap(CONFIG);
  return storage;
}

const put = (key: string, value: string): Command => ({ op: 'put', requestId: `put ${key} ${value}`, key, value: Buffer.from(value) });

/** Appends and commits commands in one Ready, as a single-member leader in `term` would. */
async function commit(storage: LevelStorage, commands: readonly Command[], term = 1): Promise<void> {
  const entries: Entry[] = commands.map((c, i) => ({ index: storage.appliedIndex + 1 + i, term, type: 'normal', data: encodeCommand(c) }));
  const last = entries.at(-1)?.index ?? storage.appliedIndex;
  const ready: Ready = {
    softState: null, hardState: { term, vote: 'n1', commit: last }, entries, snapshot: null,
    messages: [], committed: entries, readStates: [], mustSync: true,
  };
  await storage.persist(ready);
}

/** key/0000 .. key/(n-1), each with `value-i`, in batches of 500. */
async function fill(storage: LevelStorage, value: string, term = 1): Promise<void> {
  for (let start = 0; start < KEYS; start += 500) {
    const batch: Command[] = [];
    for (let i = start; i < start + 500; i++) batch.push(put(keyOf(i), `${value}-${i}`));
    await commit(storage, batch, term);
  }
}

const keyOf = (i: number) => `key/${String(i).padStart(4, '0')}`;
const text = (storage: LevelStorage, key: string) => {
  const r = storage.getSync(key);
  return r === null ? null : Buffer.from(r.value).toString();
};

describe('getSync', () => {
  test('returns the record with its metadata; absent keys are null; impossible keys throw at once', async () => {
    const storage = await newStore('a');
    await commit(storage, [put('k', 'one')]);
    await commit(storage, [put('k', 'two')]);
    expect(storage.getSync('k')).toMatchObject({ key: 'k', createRevision: 1, modRevision: 2, version: 2, lease: 0 });
    expect(text(storage, 'k')).toBe('two');
    expect(storage.getSync('absent')).toBeNull();
    expect(() => storage.getSync('')).toThrow(InvalidArgumentError);
    expect(await storage.get('k')).toEqual(storage.getSync('k'));
  });

  test('beside persist: each read sees a key before or after a batch, and once after, never before', async () => {
    const storage = await newStore('a');
    await fill(storage, 'v0');
    let seen = 0;
    let polls = 0;
    let done = false;
    // Every batch rewrites every key with the next generation of values: v1, v2, ...
    const writer = (async () => {
      for (let g = 1; g <= 4; g++) await fill(storage, `v${g}`);
      done = true;
    })();
    while (!done) {
      const i = (polls * 7919) % KEYS;
      const value = text(storage, keyOf(i));
      const g = Number(/^v(\d)-(\d+)$/.exec(value ?? '')?.[1]);
      expect(value).toBe(`v${g}-${i}`);
      expect(g).toBeGreaterThanOrEqual(seen - 1); // a different key may be one batch behind
      seen = Math.max(seen, g);
      polls++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await writer;
    expect(text(storage, keyOf(0))).toBe('v4-0');
  });

  test('across an install: every read hits one whole generation, old until the switch, new after it', { timeout: 60_000 }, async () => {
    const source = await newStore('src');
    await fill(source, 'new', 2);
    await commit(source, [put('only-new', 'x')], 2);
    await commit(source, [put('only-new', 'x')], 2); // the image must be past the target's applied index
    const file = join(dir, 'image');
    await source.writeImage((index) => ({ index, term: 2, config: CONFIG }), file);

    const target = await newStore('dst');
    await commit(target, [put('only-old', 'x')]);
    await fill(target, 'old');

    // What one synchronous look at the store sees: 'old', 'new' or a mix (which must never happen).
    let polls = 0;
    const look = (): string => {
      const i = (polls++ * 7919) % KEYS;
      const value = text(target, keyOf(i));
      const oldState = value === `old-${i}` && text(target, 'only-old') === 'x' && text(target, 'only-new') === null;
      const newState = value === `new-${i}` && text(target, 'only-old') === null && text(target, 'only-new') === 'x';
      return oldState ? 'old' : newState ? 'new' : `mix: ${keyOf(i)}=${value}`;
    };
    const states: string[] = [look()];
    let installed = false;
    const install = target.installImage(file);
    const stop = () => (installed = true);
    install.then(stop, stop);
    // Look on every turn of the event loop while the image is written in and the old generation
    // is cleared afterwards (close() waits for that clearing).
    while (!installed) {
      states.push(look());
      await new Promise((resolve) => setImmediate(resolve));
    }
    await install;
    for (let i = 0; i < 200; i++) {
      states.push(look());
      await new Promise((resolve) => setImmediate(resolve));
    }
    const runs = states.filter((s, i) => i === 0 || s !== states[i - 1]);
    expect(runs).toEqual(['old', 'new']);
    for (let i = 0; i < KEYS; i += 97) expect(text(target, keyOf(i))).toBe(`new-${i}`);
  });
});
