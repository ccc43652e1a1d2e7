import { createHash } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, expect, test } from 'vitest';
import { http, httpFollow, metric, ProcessCluster, sleep } from '../support/process-cluster.js';

/** Keys written while the lagging member is down, each with a value of VALUE_BYTES. */
const WRITES = 3000;
const VALUE_BYTES = 1024;
const CONCURRENCY = 16;
/** The first snapshot upload is cut after this many body bytes. */
const CUT_AFTER_BYTES = 256 * 1024;
const LAGGER = 'n3';

const SNAPSHOT_PUT = Buffer.from('PUT /raft/v1/snapshot ', 'latin1');
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** A request head is small; stop looking for its end after this many bytes. */
const MAX_HEAD_BYTES = 64 * 1024;

/** One snapshot PUT the proxy carried: what its headers announced and how many body bytes went through. */
interface SnapshotPut {
  offset: number;
  size: number;
  bodyBytes: number;
  cut: boolean;
}

/**
 * A TCP proxy on 127.0.0.1 in front of one member's peer URL. It passes every byte both ways,
 * reads the head of each snapshot upload (`PUT /raft/v1/snapshot`), counts its body bytes, and
 * cuts the connection of the first such upload (both sides, with a reset) once CUT_AFTER_BYTES
 * of its body have gone through: a connection dropped mid-stream.
 */
class CuttingProxy {
  readonly puts: SnapshotPut[] = [];
  targetHost = '127.0.0.1';
  targetPort = 0;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(server: Server) {
    this.#server = server;
    server.on('connection', (client) => this.#relay(client));
  }

  static async start(): Promise<CuttingProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return new CuttingProxy(server);
  }

  get url(): string {
    const addr = this.#server.address();
    if (!addr || typeof addr !== 'object') throw new Error('proxy not listening');
    return `http://127.0.0.1:${addr.port}`;
  }

  #relay(client: Socket): void {
    const upstream = createConnection({ host: this.targetHost, port: this.targetPort });
    this.#sockets.add(client).add(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('error', closeBoth).on('close', closeBoth);
    upstream.on('error', closeBoth).on('close', closeBoth);
    upstream.pipe(client);
    // What the scanner knows about this connection's requests.
    let tail = Buffer.alloc(0);
    let head: Buffer | null = null;
    let put: SnapshotPut | null = null;
    client.on('data', (chunk: Buffer) => {
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
      if (head !== null) {
        head = Buffer.concat([head, chunk]);
      } else {
        if (put) put.bodyBytes += chunk.length;
        const seen = Buffer.concat([tail, chunk]);
        const at = seen.indexOf(SNAPSHOT_PUT);
        if (at >= 0) {
          if (put) put.bodyBytes -= seen.length - at; // those bytes start the next request
          head = seen.subarray(at);
          put = null;
        }
        tail = seen.subarray(Math.max(0, seen.length - SNAPSHOT_PUT.length));
      }
      if (head !== null) {
        const end = head.indexOf(HEAD_END);
        if (end >= 0) {
          const text = head.subarray(0, end).toString('latin1');
          const header = (name: string) => Number(new RegExp(`^${name}: *([0-9]+)`, 'im').exec(text)?.[1] ?? NaN);
          put = { offset: header('x-flotilla-snapshot-offset'), size: header('x-flotilla-snapshot-size'), bodyBytes: head.length - end - HEAD_END.length, cut: false };
          this.puts.push(put);
          head = null;
          tail = Buffer.alloc(0);
        } else if (head.length > MAX_HEAD_BYTES) {
          head = null;
        }
      }
      if (put && this.puts.length === 1 && !put.cut && put.bodyBytes >= CUT_AFTER_BYTES) {
        put.cut = true;
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

let cluster: ProcessCluster | undefined;
let proxy: CuttingProxy | undefined;
afterAll(async () => {
  await cluster?.destroy();
  await proxy?.close();
});

/** Every key with its value and revisions, hashed in key order, from one member's own state. */
async function stateHash(url: string): Promise<{ hash: string; keys: number }> {
  const h = createHash('sha256');
  let after: string | undefined;
  let keys = 0;
  for (let page = 0; page < 10_000; page++) {
    const q = new URLSearchParams({ prefix: '', limit: '1000', consistency: 'stale' });
    if (after !== undefined) q.set('after', after);
    const r = (await http('GET', `${url}/v1/kv?${q}`)).json<{
      more: boolean;
      items: Array<{ key: string; value?: string; valueBase64?: string; modRevision: number; createRevision: number; version: number }>;
    }>();
    for (const it of r.items) {
      h.update(`${it.key}\0${it.value ?? it.valueBase64}\0${it.modRevision}\0${it.createRevision}\0${it.version}\n`);
      keys++;
    }
    if (!r.more || r.items.length === 0) break;
    after = r.items[r.items.length - 1].key;
  }
  return { hash: h.digest('hex'), keys };
}

async function counter(url: string, name: string): Promise<number> {
  return (await metric(url, name)) ?? 0;
}

function valueOf(i: number): string {
  const block = createHash('sha256').update(`value-${i}`).digest('hex');
  return block.repeat(Math.ceil(VALUE_BYTES / block.length)).slice(0, VALUE_BYTES);
}

/**
 * The snapshot upload to a lagging member is cut mid-stream by a proxy on its peer URL; the
 * leader asks the member how many bytes it holds and sends only the rest, and the member installs
 * an image identical, key by key, to the leader's state.
 */
test(`a snapshot upload cut after ${CUT_AFTER_BYTES} bytes resumes from the follower's offset`, { timeout: 120_000 }, async () => {
  proxy = await CuttingProxy.start();
  cluster = await ProcessCluster.create({
    size: 3,
    extraFlags: ['--snapshot-entries', '500', '--snapshot-catchup-entries', '50'],
    advertisedPeerUrls: { [LAGGER]: proxy.url },
  });
  const c = cluster;
  proxy.targetHost = c.member(LAGGER).host;
  proxy.targetPort = c.member(LAGGER).peerPort;
  await c.startAll();
  let leader = await c.waitForLeader();
  if (leader === LAGGER) {
    const moved = await httpFollow('POST', `${c.member(leader).clientUrl}/v1/cluster/leader`, { body: JSON.stringify({ name: 'n1' }) });
    expect(moved.status).toBe(200);
    leader = await c.waitForLeader(15_000, true);
  }
  expect(leader).not.toBe(LAGGER);
  // Each key gets one fixed value, so a write whose answer was lost (a 504 when the loaded
  // machine stalls, an election) is simply written again; 307s are followed.
  let writeUrl = c.member(leader).clientUrl;
  async function put(key: string, value: string): Promise<void> {
    let last = '';
    for (let attempt = 0; attempt < 30; attempt++) {
      const r = await http('PUT', `${writeUrl}/v1/kv/${key}`, { body: value }).catch(() => ({ status: 0, headers: {} as Record<string, unknown> }));
      if (r.status === 200) return;
      const location = r.headers['location'];
      if (r.status === 307 && typeof location === 'string') writeUrl = new URL(location).origin;
      else await sleep(100);
      last = r.status === 0 ? 'no answer' : String(r.status);
    }
    throw new Error(`PUT ${key} kept failing: ${last}`);
  }
  await put('seen-by-all', 'x');
  await c.kill(LAGGER);

  let next = 0;
  async function writer(): Promise<void> {
    while (next < WRITES) {
      const i = next++;
      await put(`k/${String(i).padStart(6, '0')}`, valueOf(i));
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, () => writer()));
  expect(proxy.puts).toHaveLength(0);

  c.start(LAGGER);
  leader = await c.waitForLeader();
  const url = c.member(leader).clientUrl;
  const target = (await c.status(leader))!.commitIndex;
  await c.waitForApplied(target, 60_000);
  await sleep(200);

  // The proxy saw the first upload cut, then an upload that started at a byte offset above 0.
  const [first, ...rest] = proxy.puts;
  expect(first, 'the first snapshot upload').toBeDefined();
  expect(first.cut, JSON.stringify(proxy.puts)).toBe(true);
  expect(first.offset).toBe(0);
  const size = first.size;
  expect(size).toBeGreaterThan(4 * CUT_AFTER_BYTES);
  const resumed = rest.filter((p) => p.offset > 0);
  expect(resumed.length, JSON.stringify(proxy.puts)).toBeGreaterThanOrEqual(1);
  expect(rest.every((p) => p.offset > 0 && p.size === size), JSON.stringify(proxy.puts)).toBe(true);
  const last = rest[rest.length - 1];
  // The follower kept what reached it (at most what the proxy passed, chunk framing included)...
  expect(last.offset).toBeLessThanOrEqual(first.bodyBytes);
  expect(last.offset).toBeGreaterThan(0);
  // ...and the resumed upload carried only the rest (plus a few bytes of chunked framing per 64 KiB).
  expect(last.bodyBytes).toBeGreaterThanOrEqual(size - last.offset);
  expect(last.bodyBytes).toBeLessThan(size - last.offset + 8 * 1024);

  // The sender counted it (the leader, or whichever member led when the upload ran), and both
  // sides logged the offset.
  const senders = c.members.filter((m) => m.name !== LAGGER);
  const total = async (name: string) => (await Promise.all(senders.map((m) => counter(m.clientUrl, name)))).reduce((a, b) => a + b, 0);
  expect(await total('flotilla_snapshot_resumed_bytes_total')).toBe(resumed.reduce((sum, p) => sum + p.offset, 0));
  expect(await total('flotilla_snapshot_upload_resumes_total')).toBe(resumed.length);
  expect(senders.map((m) => c.logs(m.name)).join('')).toContain(`"offset":${last.offset},"size":${size},"msg":"resuming a snapshot upload"`);
  expect(c.logs(LAGGER)).toContain(`"offset":${last.offset},"size":${size},"msg":"resuming an incoming snapshot"`);
  expect(c.logs(LAGGER)).toMatch(/installed a snapshot/);

  // The installed state is the leader's, key by key.
  const [a, b] = await Promise.all([stateHash(url), stateHash(c.member(LAGGER).clientUrl)]);
  expect(a.keys).toBe(WRITES + 1);
  expect(b.keys).toBe(a.keys);
  expect(b.hash).toBe(a.hash);
  expect((await http('GET', `${c.member(LAGGER).clientUrl}/v1/kv/k/000777?consistency=stale`)).body.toString()).toBe(valueOf(777));
  // And it takes part in the cluster afterwards.
  expect((await http('PUT', `${url}/v1/kv/after-resume`, { body: 'y' })).status).toBe(200);
  expect((await http('GET', `${c.member(LAGGER).clientUrl}/v1/kv/after-resume`)).body.toString()).toBe('y');
});
