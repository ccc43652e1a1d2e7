import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { NodeId, SnapshotMeta } from '../raft/types.js';
import type { IncomingSnapshot } from '../transport/peer-routes.js';
import { uploadSnapshot } from '../transport/snapshot-transfer.js';
import type { PinoLogger } from '../util/log.js';
import { releaseMemory, type MemoryReleased } from '../util/release-memory.js';
import type { MemberMetrics } from './metrics.js';

/** What the snapshot machinery needs from storage (LevelStorage provides it). */
export interface SnapshotStorage {
  readonly appliedIndex: number;
  writeImage(metaAt: (appliedIndex: number) => SnapshotMeta, file: string): Promise<{ meta: SnapshotMeta; revision: number }>;
  installImage(file: string): Promise<{ meta: SnapshotMeta }>;
  compactLog(meta: SnapshotMeta): Promise<void>;
}

export interface SnapshotDeps {
  readonly self: NodeId;
  readonly selfClientUrl: string;
  readonly dataDir: string;
  readonly storage: SnapshotStorage;
  readonly log: PinoLogger;
  readonly metrics?: Pick<MemberMetrics, 'snapshotUploadResumes' | 'snapshotResumedBytes'>;
  term(): number;
  commit(): number;
  snapshotMetaAt(index: number): SnapshotMeta;
  peerUrl(peer: NodeId): string | undefined;
  /** Run `task` in the member loop, between two Readies (no persist in flight). */
  exclusive<T>(task: () => Promise<T>): Promise<T>;
  /** The image at `meta` is installed in storage: tell the core. */
  installed(meta: SnapshotMeta, from: NodeId, term: number): void;
  reportSnapshot(peer: NodeId, ok: boolean): void;
}

/** A collection's figures for the log, in MiB and milliseconds. */
function mib(r: MemoryReleased): Record<string, number> {
  const m = (bytes: number): number => Math.round(bytes / 104857.6) / 10;
  return { heapMiB: m(r.heapBefore), heapAfterMiB: m(r.heapAfter), rssMiB: m(r.rssBefore), rssAfterMiB: m(r.rssAfter), collections: r.rounds, gcMs: Math.round(r.ms) };
}

/** An outgoing image is reused for followers while it is this fresh (entries behind the log). */
const IMAGE_REUSE_MS = 60_000;
/** How long a follower that installed an image may hold compaction at its match index. */
const POST_INSTALL_HOLD_MS = 120_000;

/**
 * Log compaction and InstallSnapshot. Images are files under `<data-dir>/snapshots/`: an outgoing
 * one is written once from a LevelDB snapshot and streamed to every follower that needs it; an
 * incoming one is appended as it arrives (so a dropped upload resumes at the byte it reached) and
 * installed, whole and verified, inside the member loop.
 */
export class SnapshotManager {
  readonly #dir: string;
  readonly #uploading = new Set<NodeId>();
  /**
   * Per follower being sent a snapshot, the lowest index its image can have: the log after it must
   * stay until the follower has installed the image and taken those entries, or it would need
   * another snapshot at once, and another, for as long as writes keep coming (etcd pauses
   * compaction during snapshot sends for the same reason).
   */
  readonly #holds = new Map<NodeId, { index: number; installedAt: number | null }>();
  #image: { file: string; meta: SnapshotMeta; revision: number; createdAt: number } | null = null;
  #creating: Promise<{ file: string; meta: SnapshotMeta; revision: number }> | null = null;
  /** The upload being written to disk now, if any (at most one: a newer one supersedes it). */
  #receiving: { body: Readable; done: Promise<void> } | null = null;

  constructor(readonly deps: SnapshotDeps) {
    this.#dir = join(deps.dataDir, 'snapshots');
  }

  async init(): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    // Outgoing images from a previous run are stale; partial incoming ones may still resume.
    for (const f of await readdir(this.#dir)) if (f.startsWith('out-') || f.startsWith('backup-')) await rm(join(this.#dir, f), { force: true });
  }

  // ------------------------------------------------------------------ compaction

  /** Keep the in-memory and on-disk log bounded: fold entries up to `index` into the boundary. */
  async compact(index: number, compactCore: (index: number) => void): Promise<void> {
    await this.deps.exclusive(async () => {
      const meta = this.deps.snapshotMetaAt(index);
      await this.deps.storage.compactLog(meta);
      compactCore(index);
      this.deps.log.info({ index, term: meta.term }, 'compacted the log');
    });
  }

  /**
   * The highest index compaction may reach now; null when nothing holds it. A follower being sent
   * an image holds it at the image's index; once it has installed the image, at its match index,
   * until it is back within the catch-up tail (`caughtUp`) or POST_INSTALL_HOLD_MS have passed:
   * the entries it needs next must still be there when it asks for them.
   */
  compactionHold(matchOf: (peer: NodeId) => number, caughtUp: (match: number) => boolean): number | null {
    let hold: number | null = null;
    const now = performance.now();
    for (const [peer, h] of this.#holds) {
      let index = h.index;
      if (h.installedAt !== null) {
        const match = matchOf(peer);
        if (caughtUp(match) || now - h.installedAt > POST_INSTALL_HOLD_MS) {
          this.#holds.delete(peer);
          continue;
        }
        index = Math.max(index, match);
      }
      hold = hold === null ? index : Math.min(hold, index);
    }
    return hold;
  }

  // ------------------------------------------------------------------ outgoing

  /** The core asked for a snapshot to `peer` (it is behind our compacted log). */
  send(peer: NodeId, minIndex: number): void {
    if (this.#uploading.has(peer)) return;
    const peerUrl = this.deps.peerUrl(peer);
    if (!peerUrl) {
      this.deps.reportSnapshot(peer, false);
      return;
    }
    this.#uploading.add(peer);
    // The image will be taken at the applied index or later (or reused, if at least minIndex).
    this.#holds.set(peer, { index: Math.min(minIndex, this.deps.storage.appliedIndex), installedAt: null });
    void this.#upload(peer, peerUrl, minIndex).then(
      (index) => {
        this.#uploading.delete(peer);
        if (index === null) this.#holds.delete(peer);
        else this.#holds.set(peer, { index, installedAt: performance.now() });
      },
      () => {
        this.#uploading.delete(peer);
        this.#holds.delete(peer);
      },
    );
  }

  /** Resolves with the index of the image the follower installed, or null if it did not. */
  async #upload(peer: NodeId, peerUrl: string, minIndex: number): Promise<number | null> {
    const started = performance.now();
    try {
      const image = await this.#outgoingImage(minIndex);
      this.#holds.set(peer, { index: image.meta.index, installedAt: null });
      this.deps.log.info({ peer, index: image.meta.index }, 'sending a snapshot');
      await uploadSnapshot({
        self: this.deps.self, selfClientUrl: this.deps.selfClientUrl, peerUrl, term: this.deps.term(),
        index: image.meta.index, snapTerm: image.meta.term, file: image.file,
        onResume: (offset, size) => {
          this.deps.log.info({ peer, index: image.meta.index, offset, size }, 'resuming a snapshot upload');
          this.deps.metrics?.snapshotUploadResumes.inc();
          this.deps.metrics?.snapshotResumedBytes.inc(offset);
        },
      });
      this.deps.log.info({ peer, index: image.meta.index, ms: Math.round(performance.now() - started) }, 'snapshot installed by follower');
      this.deps.reportSnapshot(peer, true);
      return image.meta.index;
    } catch (err) {
      this.deps.log.warn({ peer, err: err instanceof Error ? err.message : String(err) }, 'snapshot to follower failed');
      this.deps.reportSnapshot(peer, false);
      return null;
    }
  }

  async #outgoingImage(minIndex: number): Promise<{ file: string; meta: SnapshotMeta; revision: number }> {
    const img = this.#image;
    if (img && img.meta.index >= minIndex && Date.now() - img.createdAt < IMAGE_REUSE_MS) return img;
    this.#creating ??= this.#createImage('out').finally(() => (this.#creating = null));
    return this.#creating;
  }

  async #createImage(kind: 'out' | 'backup'): Promise<{ file: string; meta: SnapshotMeta; revision: number }> {
    const file = join(this.#dir, `${kind}-${Date.now()}-${Math.floor(Math.random() * 1e9)}.img`);
    const header = await this.deps.storage.writeImage((applied) => this.deps.snapshotMetaAt(applied), file);
    // Encoding every record left the heap grown by garbage, as installing does on the other side.
    releaseMemory((freed) => this.deps.log.info({ index: header.meta.index, ...mib(freed) }, 'released memory after writing a snapshot image'));
    if (kind === 'out') {
      const old = this.#image;
      this.#image = { file, meta: header.meta, revision: header.revision, createdAt: Date.now() };
      if (old) await rm(old.file, { force: true });
    }
    return { file, meta: header.meta, revision: header.revision };
  }

  /** A consistent backup image in a temp file; the caller streams it and calls `release`. */
  async backup(): Promise<{ file: string; meta: SnapshotMeta; revision: number; release: () => Promise<void> }> {
    const img = await this.#createImage('backup');
    return { ...img, release: () => rm(img.file, { force: true }) };
  }

  // ------------------------------------------------------------------ incoming

  #incomingFile(s: IncomingSnapshot): string {
    return join(this.#dir, `in-${s.index}-${s.snapTerm}.img`);
  }

  /** Bytes of this image already on disk. The sender asks only after its upload broke: settle that one first. */
  async offset(s: IncomingSnapshot): Promise<number> {
    await this.#endReceiving();
    return this.#bytesHeld(this.#incomingFile(s));
  }

  async #bytesHeld(file: string): Promise<number> {
    try {
      return (await stat(file)).size;
    } catch {
      return 0;
    }
  }

  /**
   * End the upload being written, if any, and wait until its last write is on disk, so the size
   * we report is final. Its sender has given up on it (a sender asks for the offset, or starts a
   * new upload, only after its previous one failed); over a half-open connection we might not
   * have noticed yet, and two uploads appending to one file would corrupt it.
   */
  async #endReceiving(): Promise<void> {
    const r = this.#receiving;
    if (!r) return;
    r.body.destroy();
    await r.done;
  }

  async receive(
    s: IncomingSnapshot & { readonly offset: number; readonly size: number },
    body: Readable,
  ): Promise<{ status: 204 | 409 | 400; offset?: number; message?: string }> {
    if (s.term < this.deps.term()) {
      body.resume();
      return { status: 409, offset: 0, message: `stale leader term ${s.term}` };
    }
    const file = this.#incomingFile(s);
    const have = await this.offset(s);
    if (have !== s.offset) {
      body.resume();
      return { status: 409, offset: have, message: `have ${have} bytes, upload starts at ${s.offset}` };
    }
    await this.#dropOtherIncoming(file);
    if (this.#receiving) {
      body.resume(); // another upload started while we looked at the file; the sender asks again
      return { status: 409, offset: have, message: 'another upload of a snapshot is being received' };
    }
    if (have > 0) this.deps.log.info({ from: s.from, index: s.index, offset: have, size: s.size }, 'resuming an incoming snapshot');
    const written = pipeline(body, createWriteStream(file, { flags: have === 0 ? 'w' : 'a' }));
    const receiving = { body, done: written.then(() => {}, () => {}) };
    this.#receiving = receiving;
    void receiving.done.then(() => {
      if (this.#receiving === receiving) this.#receiving = null;
    });
    try {
      await written;
    } catch (err) {
      const held = await this.#bytesHeld(file);
      this.deps.log.warn({ from: s.from, index: s.index, offset: held, size: s.size, err: err instanceof Error ? err.message : String(err) }, 'snapshot upload interrupted');
      return { status: 409, offset: held, message: 'upload interrupted' };
    }
    const size = await this.#bytesHeld(file);
    if (size < s.size) return { status: 409, offset: size, message: 'upload incomplete' };
    if (size > s.size) {
      await rm(file, { force: true });
      return { status: 400, message: 'upload longer than announced' };
    }
    await this.#install(file, s);
    return { status: 204 };
  }

  async #install(file: string, s: IncomingSnapshot): Promise<void> {
    try {
      await this.deps.exclusive(async () => {
        if (s.index <= this.deps.storage.appliedIndex) return; // we already hold that state
        const header = await this.deps.storage.installImage(file);
        this.deps.installed(header.meta, s.from, s.term);
        this.deps.log.info({ index: header.meta.index, from: s.from }, 'installed a snapshot');
        // Decoding the image left the heap grown by garbage: give it back now (release-memory.ts).
        releaseMemory((freed) => this.deps.log.info(mib(freed), 'released memory after installing a snapshot'));
      });
    } finally {
      await rm(file, { force: true });
    }
  }

  async #dropOtherIncoming(keep: string): Promise<void> {
    for (const f of await readdir(this.#dir)) {
      const path = join(this.#dir, f);
      if (f.startsWith('in-') && path !== keep) await rm(path, { force: true });
    }
  }
}
