// A digest of a member's whole key space, read from that member alone: every key with its value
// and revisions, in key order, hashed the way test/cluster/snapshot-catchup.test.ts does it, so
// two members hold the same data exactly when their digests are equal.
import { createHash } from 'node:crypto';
import { http } from './proc.mjs';

/**
 * Page through GET /v1/kv?prefix=&limit=PAGE&after=...&consistency=stale on `url`.
 * @returns {Promise<{ hash: string, keys: number, revision: number, pages: number, ms: number }>}
 */
export async function stateHash(url, { page = 1000, deadlineMs = 600_000 } = {}) {
  const t0 = performance.now();
  const h = createHash('sha256');
  let after;
  let keys = 0;
  let revision = NaN;
  let pages = 0;
  // Bounded: at most 100,000 pages (100 million keys at 1000 a page) and the deadline.
  for (; pages < 100_000; pages++) {
    if (performance.now() - t0 > deadlineMs) throw new Error(`hashing ${url} took longer than ${deadlineMs / 1000} s (${keys} keys so far)`);
    const q = new URLSearchParams({ prefix: '', limit: String(page), consistency: 'stale' });
    if (after !== undefined) q.set('after', after);
    const r = await http('GET', `${url}/v1/kv?${q}`, { timeoutMs: 30_000 });
    if (r.status !== 200) throw new Error(`GET ${url}/v1/kv?${q} answered ${r.status || r.error?.message}: ${r.body.slice(0, 200)}`);
    const body = r.json();
    if (pages === 0) revision = body.revision;
    for (const it of body.items) {
      h.update(`${it.key}\0${it.value ?? it.valueBase64}\0${it.modRevision}\0${it.createRevision}\0${it.version}\n`);
      keys++;
    }
    if (!body.more || body.items.length === 0) {
      pages++;
      break;
    }
    after = body.items[body.items.length - 1].key;
  }
  return { hash: h.digest('hex'), keys, revision, pages, ms: performance.now() - t0 };
}
