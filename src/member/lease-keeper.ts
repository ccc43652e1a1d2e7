/**
 * The leader's clock for leases. Which leases exist (and their TTLs) is replicated state; when
 * each one expires is not: only the leader tracks deadlines, in memory, and revokes an expired
 * lease by proposing a revoke through the log, so every member deletes its keys at the same
 * revision. A new leader restarts every lease's full TTL, as etcd does, so an election never
 * expires a lease early (it may expire late by up to one election).
 */
export interface LeaseKeeperDeps {
  /** Milliseconds from a monotonic clock. */
  now(): number;
  /** Propose revoking an expired lease; resolves when applied (or rejects). */
  revokeExpired(id: number): Promise<void>;
}

/** Expired leases revoked per tick, so a mass expiry cannot flood the log at once. */
const MAX_REVOKES_PER_TICK = 256;
/** A revoke that has not applied after this long may be proposed again. */
const REVOKE_RETRY_MS = 5000;

export class LeaseKeeper {
  readonly #deadlines = new Map<number, { ttlMs: number; expiresAt: number }>();
  readonly #revoking = new Map<number, number>();
  readonly #revokedSincePromote = new Set<number>();
  #active = false;

  constructor(readonly deps: LeaseKeeperDeps) {}

  get active(): boolean {
    return this.#active;
  }

  /**
   * Became leader: from now on grants and keep-alives are ours to time. The stored leases arrive
   * a moment later (`load`), each armed with its full TTL from then.
   */
  promote(): void {
    this.#active = true;
    this.#deadlines.clear();
    this.#revoking.clear();
    this.#revokedSincePromote.clear();
  }

  /** The leases the store holds, read after `promote`; those granted or revoked since are kept. */
  load(leases: ReadonlyArray<{ id: number; ttlSeconds: number }>): void {
    if (!this.#active) return;
    const now = this.deps.now();
    for (const l of leases) {
      if (this.#deadlines.has(l.id) || this.#revokedSincePromote.has(l.id)) continue;
      this.#deadlines.set(l.id, { ttlMs: l.ttlSeconds * 1000, expiresAt: now + l.ttlSeconds * 1000 });
    }
  }

  /** Lost leadership: the next leader keeps time. */
  demote(): void {
    this.#active = false;
    this.#deadlines.clear();
    this.#revoking.clear();
    this.#revokedSincePromote.clear();
  }

  /** A grant was applied (on the leader). */
  granted(id: number, ttlSeconds: number): void {
    if (!this.#active) return;
    this.#deadlines.set(id, { ttlMs: ttlSeconds * 1000, expiresAt: this.deps.now() + ttlSeconds * 1000 });
  }

  /** A revoke was applied. */
  revoked(id: number): void {
    this.#deadlines.delete(id);
    this.#revoking.delete(id);
    if (this.#active) this.#revokedSincePromote.add(id);
  }

  /**
   * Keep-alive of a lease the store holds: its full TTL starts again. False if it has already
   * expired (a revoke is on its way). A lease not armed yet (the stored list is still loading) is
   * armed now.
   */
  keepAlive(id: number, ttlSeconds: number): boolean {
    if (this.#revoking.has(id)) return false;
    const now = this.deps.now();
    const d = this.#deadlines.get(id);
    if (d && now >= d.expiresAt) return false;
    this.#deadlines.set(id, { ttlMs: ttlSeconds * 1000, expiresAt: now + ttlSeconds * 1000 });
    return true;
  }

  /** Called every tick on the leader: revoke what has expired. */
  tick(): void {
    if (!this.#active) return;
    const now = this.deps.now();
    let n = 0;
    for (const [id, d] of this.#deadlines) {
      if (n >= MAX_REVOKES_PER_TICK) break;
      if (now < d.expiresAt) continue;
      const since = this.#revoking.get(id);
      if (since !== undefined && now - since < REVOKE_RETRY_MS) continue;
      this.#revoking.set(id, now);
      n++;
      this.deps.revokeExpired(id).catch(() => {
        // Not leader any more, or overloaded: the next tick (or the next leader) tries again.
      });
    }
  }
}
