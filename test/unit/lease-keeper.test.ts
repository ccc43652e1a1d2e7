import { describe, expect, test } from 'vitest';
import { LeaseKeeper } from '../../src/member/lease-keeper.js';

function keeper() {
  let now = 0;
  const revoked: number[] = [];
  const k = new LeaseKeeper({ now: () => now, revokeExpired: async (id) => void revoked.push(id) });
  return { k, revoked, advance: (ms: number) => (now += ms) };
}

describe('LeaseKeeper', () => {
  test('a lease not kept alive is revoked once its TTL has passed, not before', () => {
    const { k, revoked, advance } = keeper();
    k.promote();
    k.granted(1, 10);
    advance(9_999);
    k.tick();
    expect(revoked).toEqual([]);
    advance(1);
    k.tick();
    expect(revoked).toEqual([1]);
    k.tick();
    expect(revoked).toEqual([1]); // one revoke in flight, not one per tick
  });

  test('keep-alive restarts the TTL; an expired lease cannot be kept alive', () => {
    const { k, revoked, advance } = keeper();
    k.promote();
    k.granted(1, 10);
    advance(8_000);
    expect(k.keepAlive(1, 10)).toBe(true);
    advance(8_000);
    k.tick();
    expect(revoked).toEqual([]);
    advance(2_000);
    expect(k.keepAlive(1, 10)).toBe(false);
  });

  test('a new leader gives every stored lease its full TTL (no early expiry after an election)', () => {
    const { k, revoked, advance } = keeper();
    advance(1_000_000);
    k.promote();
    k.load([{ id: 5, ttlSeconds: 3 }]);
    advance(2_999);
    k.tick();
    expect(revoked).toEqual([]);
    advance(1);
    k.tick();
    expect(revoked).toEqual([5]);
  });

  test('leases revoked while the stored list was loading are not re-armed', () => {
    const { k, revoked, advance } = keeper();
    k.promote();
    k.revoked(9);
    k.load([{ id: 9, ttlSeconds: 1 }]);
    advance(5_000);
    k.tick();
    expect(revoked).toEqual([]);
  });

  test('a follower keeps no clock', () => {
    const { k, revoked, advance } = keeper();
    k.granted(1, 1);
    advance(10_000);
    k.tick();
    expect(revoked).toEqual([]);
  });
});
