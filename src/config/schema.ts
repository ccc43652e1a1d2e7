import { z } from 'zod';
import { MAX_KEY_BYTES, MAX_VALUE_BYTES } from '../kv/command.js';

/** `n1=http://127.0.0.1:12380,n2=...` → [{ name, peerUrl }] */
const MEMBER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// URL' });

export const InitialCluster = z
  .string()
  .min(1)
  .transform((s, ctx) => {
    const members: Array<{ name: string; peerUrl: string }> = [];
    for (const part of s.split(',')) {
      const eq = part.indexOf('=');
      const name = eq > 0 ? part.slice(0, eq).trim() : '';
      const peerUrl = eq > 0 ? part.slice(eq + 1).trim() : '';
      if (!MEMBER_NAME.test(name) || !httpUrl.safeParse(peerUrl).success) {
        ctx.addIssue({ code: 'custom', message: `"${part}" is not NAME=http://HOST:PORT` });
        return z.NEVER;
      }
      if (members.some((m) => m.name === name)) {
        ctx.addIssue({ code: 'custom', message: `member ${name} is listed twice` });
        return z.NEVER;
      }
      members.push({ name, peerUrl: stripSlash(peerUrl) });
    }
    return members;
  });

function stripSlash(url: string): string {
  return url.endsWith('/') ? url.slice(0, -1) : url;
}

const positiveInt = z.coerce.number().int().positive();
const booleanFlag = z.union([z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')]);

export const ServeConfig = z
  .object({
    name: z.string().regex(MEMBER_NAME, 'must be 1-64 letters, digits, _ or -'),
    dataDir: z.string().min(1),
    listenClientUrl: httpUrl.transform(stripSlash),
    listenPeerUrl: httpUrl.transform(stripSlash),
    advertiseClientUrl: httpUrl.transform(stripSlash).optional(),
    initialCluster: InitialCluster.optional(),
    /** A running cluster's client URL: ask it to add this (new) member. */
    join: httpUrl.transform(stripSlash).optional(),
    heartbeatIntervalMs: positiveInt.default(100),
    electionTimeoutMs: positiveInt.default(1000),
    /** Extensions (documented in docs/api.md). */
    forwardToLeader: booleanFlag.default(false),
    maxKeyBytes: positiveInt.max(MAX_KEY_BYTES).default(4096),
    maxValueBytes: positiveInt.max(MAX_VALUE_BYTES).default(1536 * 1024),
    requestTimeoutMs: positiveInt.default(5000),
    /** Compact the log once this many applied entries are in it (etcd's --snapshot-count). */
    snapshotEntries: positiveInt.min(2).default(10_000),
    /** Entries kept after compaction so slightly slow followers catch up without a snapshot. */
    snapshotCatchupEntries: z.coerce.number().int().min(0).default(5000),
    /**
     * Or compact once the entries in the log hold this many bytes of data, whatever their count:
     * big values would otherwise keep gigabytes in the log (and in memory) before 10,000 entries.
     * The catch-up tail is then at most half of it.
     */
    snapshotBytes: positiveInt.min(1024).default(64 * 1024 * 1024),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .refine((c) => c.electionTimeoutMs >= 2 * c.heartbeatIntervalMs, {
    path: ['electionTimeoutMs'],
    error: 'must be at least twice --heartbeat-interval',
  })
  .refine((c) => !(c.join && c.initialCluster), { path: ['join'], error: 'give --join or --initial-cluster, not both' })
  .refine((c) => c.snapshotCatchupEntries < c.snapshotEntries, {
    path: ['snapshotCatchupEntries'],
    error: 'must be smaller than --snapshot-entries',
  });

export type ServeConfig = z.output<typeof ServeConfig>;
export type ServeConfigInput = z.input<typeof ServeConfig>;
