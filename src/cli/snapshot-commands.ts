/**
 * `flotilla snapshot save|restore|status`: backups of a running cluster and new clusters made
 * from them.
 *
 *   snapshot save FILE [--endpoints URL,...]
 *     Downloads `GET /v1/snapshot` (a state-machine image, see storage/snapshot-image.ts) from the
 *     first endpoint that answers into FILE.part, verifies every checksum, fsyncs, renames it to
 *     FILE and prints one JSON line: file, index, term, revision, keys, records, bytes, sha256.
 *   snapshot restore FILE --name N --data-dir DIR --initial-cluster n1=URL,...
 *     Verifies FILE and makes the empty (or missing) DIR a data dir from which `serve --name N
 *     --data-dir DIR --initial-cluster SAME` starts a new cluster holding the backup's data. Every
 *     founding member is restored from the same file with the same --initial-cluster, so they all
 *     get the identical Raft state (see LevelStorage.restoreImage) and carry on from the backup's
 *     revision. Prints one JSON line.
 *   snapshot status FILE
 *     Verifies FILE and prints what `save` prints.
 *
 * Errors are one line on stderr: exit 2 for bad usage, 1 for failures.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { InitialCluster } from '../config/schema.js';
import { ClusterFile } from '../member/cluster-file.js';
import type { ConfigState } from '../raft/types.js';
import { LevelStorage } from '../storage/level-storage.js';
import { verifyImage, type ImageInfo } from '../storage/snapshot-image.js';
import { DEFAULT_ENDPOINTS } from './client-commands.js';

const USAGE = `usage: flotilla snapshot save FILE [--endpoints URL,...]
       flotilla snapshot restore FILE --name N --data-dir DIR --initial-cluster n1=URL,n2=URL,...
       flotilla snapshot status FILE`;

/** A member writes the whole image before it answers: allow for a large store. */
const HEADERS_TIMEOUT_MS = 10 * 60_000;
/** The longest pause between two chunks of the download. */
const BODY_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 3;

const FLAGS: Record<string, readonly string[]> = {
  save: ['endpoints'],
  restore: ['name', 'data-dir', 'initial-cluster'],
  status: [],
};

class UsageError extends Error {}

interface Parsed {
  readonly file: string;
  readonly flags: Map<string, string>;
}

/** The `snapshot` command's entry: returns the exit code. */
export async function runSnapshotCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return sub === undefined ? 2 : 0;
  }
  try {
    const parsed = parseSnapshotArgs(sub, rest);
    switch (sub) {
      case 'save':
        return await save(parsed);
      case 'restore':
        return await restore(parsed);
      default:
        return await status(parsed);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`flotilla snapshot ${sub}: ${message.split('\n')[0]}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function parseSnapshotArgs(sub: string, argv: readonly string[]): Parsed {
  const allowed = FLAGS[sub];
  if (allowed === undefined) throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}\n${USAGE}`);
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    if (!allowed.includes(name)) throw new UsageError(`unknown flag --${name}`);
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined || value === '') throw new UsageError(`--${name} needs a value`);
    flags.set(name, value);
  }
  if (positional.length !== 1) throw new UsageError(`expected one FILE argument, got ${positional.length}`);
  return { file: positional[0], flags };
}

function requiredFlag(p: Parsed, name: string): string {
  const value = p.flags.get(name);
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

function summary(info: ImageInfo, extra: Record<string, unknown>): string {
  return JSON.stringify({
    ...extra,
    index: info.meta.index,
    term: info.meta.term,
    revision: info.revision,
    keys: info.counts.kv,
    leases: info.counts.lease,
    records: info.records,
    bytes: info.bytes,
    sha256: info.sha256,
  });
}

// ---- save ----

async function save(p: Parsed): Promise<number> {
  const endpoints = endpointList(p.flags.get('endpoints') ?? process.env['FLOTILLA_ENDPOINTS'] ?? DEFAULT_ENDPOINTS);
  const part = `${p.file}.part`;
  const failures: string[] = [];
  for (const endpoint of endpoints) {
    try {
      const { index } = await download(`${endpoint}/v1/snapshot`, part);
      const info = await verifyImage(part);
      if (index !== null && index !== info.meta.index) {
        throw new Error(`the image is at index ${info.meta.index}, the response said ${index}`);
      }
      await rename(part, p.file);
      process.stdout.write(summary(info, { file: p.file, endpoint }) + '\n');
      return 0;
    } catch (err) {
      failures.push(`${endpoint}: ${err instanceof Error ? err.message : String(err)}`);
      await rm(part, { force: true });
    }
  }
  throw new Error(`no endpoint gave a backup (${failures.join('; ')})`);
}

function endpointList(raw: string): string[] {
  const list = raw.split(',').map((s) => s.trim().replace(/\/+$/, '')).filter((s) => s.length > 0);
  if (list.length === 0) throw new UsageError('--endpoints is empty');
  for (const url of list) {
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(url).protocol);
    } catch {
      ok = false;
    }
    if (!ok) throw new UsageError(`bad endpoint ${JSON.stringify(url)}: expected http://HOST:PORT`);
  }
  return list;
}

/** Streams the response body into `file` (fsynced); returns the index the response announced. */
async function download(url: string, file: string): Promise<{ index: number | null }> {
  let target = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await request(target, { method: 'GET', headersTimeout: HEADERS_TIMEOUT_MS, bodyTimeout: BODY_TIMEOUT_MS });
    const location = res.headers['location'];
    if (res.statusCode === 307 && typeof location === 'string') {
      await res.body.dump();
      target = new URL(location, target).toString();
      continue;
    }
    if (res.statusCode !== 200) {
      const text = (await res.body.text()).slice(0, 300).replace(/\s+/g, ' ');
      throw new Error(`HTTP ${res.statusCode} ${text}`);
    }
    await pipeline(res.body, createWriteStream(file));
    const fh = await open(file, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const header = res.headers['x-flotilla-snapshot-index'];
    return { index: typeof header === 'string' && /^[0-9]+$/.test(header) ? Number(header) : null };
  }
  throw new Error(`more than ${MAX_REDIRECTS} redirects`);
}

// ---- restore ----

async function restore(p: Parsed): Promise<number> {
  const name = requiredFlag(p, 'name');
  const dataDir = requiredFlag(p, 'data-dir');
  const parsed = InitialCluster.safeParse(requiredFlag(p, 'initial-cluster'));
  if (!parsed.success) throw new UsageError(`--initial-cluster: ${parsed.error.issues[0].message}`);
  const members = parsed.data;
  if (!members.some((m) => m.name === name)) throw new UsageError(`--initial-cluster does not list this member (${name})`);
  const created = await prepareEmptyDir(dataDir);
  // The founding configuration, exactly as serve would build it from the same --initial-cluster.
  const config: ConfigState = {
    voters: members.map((m) => m.name),
    learners: [],
    peerUrls: Object.fromEntries(members.map((m) => [m.name, m.peerUrl])),
  };
  let info: ImageInfo;
  try {
    // The whole file is checked before the database is created (restoreImage checks it again).
    await verifyImage(p.file);
    const storage = await LevelStorage.open(dataDir);
    try {
      info = await storage.restoreImage(p.file, config);
    } finally {
      await storage.close();
    }
    // After the Raft state: serve finds both. (Were this lost, serve --initial-cluster writes it.)
    await new ClusterFile(dataDir).write(members);
  } catch (err) {
    // Nothing half-made stays behind (DIR was empty or missing).
    await removeWhatWeMade(dataDir, created);
    throw err;
  }
  process.stdout.write(summary(info, { dataDir, name }) + '\n');
  return 0;
}

/** Makes sure DIR exists and is empty; returns true if it had to be created. */
async function prepareEmptyDir(dir: string): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true });
    return true;
  }
  if (entries.length > 0) throw new Error(`${dir} is not empty: restore makes a new data dir, it never overwrites one`);
  return false;
}

/** After a failed restore: DIR was empty or missing before, so everything in it is ours. */
async function removeWhatWeMade(dir: string, created: boolean): Promise<void> {
  if (created) {
    await rm(dir, { recursive: true, force: true });
    return;
  }
  for (const entry of await readdir(dir).catch(() => [])) await rm(join(dir, entry), { recursive: true, force: true });
}

// ---- status ----

async function status(p: Parsed): Promise<number> {
  const info = await verifyImage(p.file);
  process.stdout.write(summary(info, { file: p.file }) + '\n');
  return 0;
}
