/**
 * Network partitions between chaos members, cut with iptables on loopback.
 *
 * Each member listens on its own 127.0.0.x address and, through bind-source.mjs, also connects from
 * it, so "n1 -> n2" is the TCP traffic from n1's address to n2's peer port. The suite keeps its rules
 * in a chain of its own, FLOTILLA_CHAOS_<pid>_<n>, entered from OUTPUT only for 127.0.0.0/8 -> 127.0.0.0/8
 * traffic; every rule in it names this run's member addresses and ports, so nothing else on the
 * machine is touched. The chain is always removed: by remove() (callers use try/finally), by the
 * clean-up when the test worker ends early (cleanup.ts), and, for chains left by a process that was
 * SIGKILLed, by the sweep at the next start.
 */
import { execFileSync } from 'node:child_process';
import type { MemberSpec } from '../support/process-cluster.js';
import { onAbnormalEnd } from './cleanup.js';

export const CHAIN_PREFIX = 'FLOTILLA_CHAOS_';
const LOOPBACK = '127.0.0.0/8';
const IPTABLES_TIMEOUT_MS = 10_000;

export type Availability = { readonly ok: true } | { readonly ok: false; readonly reason: string };

function iptables(args: readonly string[]): string {
  // -w: wait for the xtables lock instead of failing when another iptables runs at the same moment.
  return execFileSync('iptables', ['-w', ...args], { encoding: 'utf8', timeout: IPTABLES_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
}

function describeError(err: unknown): string {
  const e = err as { code?: string; stderr?: string; message?: string };
  if (e.code === 'ENOENT') return 'iptables is not installed';
  const text = (e.stderr ?? '').trim() || e.message || String(err);
  return text.split('\n')[0];
}

/**
 * Can this process change iptables? Lists the rules (the cheap test) and says why not if it cannot.
 * FLOTILLA_CHAOS_IPTABLES=off opts out (a machine whose firewall must not be touched).
 */
export function iptablesAvailability(): Availability {
  if (process.env['FLOTILLA_CHAOS_IPTABLES'] === 'off') return { ok: false, reason: 'FLOTILLA_CHAOS_IPTABLES=off' };
  if (process.platform !== 'linux') return { ok: false, reason: `iptables needs Linux, this is ${process.platform}` };
  try {
    iptables(['-L', 'OUTPUT', '-n']);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `\`iptables -L -n\` failed: ${describeError(err)}` };
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** The jump rule from OUTPUT into a chain, as arguments after -A/-D/-I OUTPUT. */
function jumpSpec(chain: string): string[] {
  return ['-s', LOOPBACK, '-d', LOOPBACK, '-j', chain];
}

function removeChain(chain: string): void {
  // Delete every jump into it (there should be one; loop in case a crash left two), then the chain.
  for (let i = 0; i < 8; i++) {
    try {
      iptables(['-D', 'OUTPUT', ...jumpSpec(chain)]);
    } catch {
      break;
    }
  }
  try {
    iptables(['-F', chain]);
    iptables(['-X', chain]);
  } catch {
    // already gone
  }
}

/** Removes FLOTILLA_CHAOS_<pid>_<n> chains whose process is gone. Returns their names. */
export function sweepStaleChains(): string[] {
  let listing: string;
  try {
    listing = iptables(['-S']);
  } catch {
    return [];
  }
  const chains = new Set<string>();
  for (const m of listing.matchAll(new RegExp(`${CHAIN_PREFIX}(\\d+)(?:_\\d+)?`, 'g'))) {
    if (!processAlive(Number(m[1]))) chains.add(m[0]);
  }
  for (const chain of chains) removeChain(chain);
  return [...chains];
}

export interface CutOptions {
  /** Also cut clients off from the minority side's client ports, so they see the partition too. */
  readonly clients: boolean;
}

let chainsMade = 0;

/** The members of one run and the chain their rules live in (FLOTILLA_CHAOS_<pid>_<n>, at most 28 chars). */
export class IptablesNetwork {
  readonly chain = `${CHAIN_PREFIX}${process.pid}_${chainsMade++}`;
  readonly #members: readonly MemberSpec[];
  #forget: (() => void) | null = null;
  #installed = false;

  constructor(members: readonly MemberSpec[]) {
    for (const m of members) {
      if (!/^127\.\d+\.\d+\.\d+$/.test(m.host) || m.host === '127.0.0.1') {
        throw new Error(`partitions need one distinct 127.x address per member, ${m.name} has ${m.host}`);
      }
    }
    this.#members = members;
  }

  /** Creates the chain and the jump into it. Sweeps chains left by dead processes first. */
  install(): void {
    if (this.#installed) return;
    sweepStaleChains();
    iptables(['-N', this.chain]);
    this.#forget = onAbnormalEnd(() => this.remove());
    this.#installed = true;
    iptables(['-I', 'OUTPUT', ...jumpSpec(this.chain)]);
  }

  /** Cuts `side` off from every other member (both directions, peer ports), and optionally from clients. */
  isolate(side: readonly string[], options: CutOptions): void {
    if (!this.#installed) throw new Error('install() the network before cutting it');
    const inside = this.#members.filter((m) => side.includes(m.name));
    const outside = this.#members.filter((m) => !side.includes(m.name));
    for (const a of inside) {
      for (const b of outside) {
        this.#dropPeer(a, b);
        this.#dropPeer(b, a);
      }
      if (options.clients) {
        iptables(['-A', this.chain, '-d', a.host, '-p', 'tcp', '--dport', String(a.clientPort), '-j', 'DROP']);
        iptables(['-A', this.chain, '-s', a.host, '-p', 'tcp', '--sport', String(a.clientPort), '-j', 'DROP']);
      }
    }
  }

  /** Cuts the peer traffic between two members only, both ways (each still reaches the others). */
  cutPair(a: string, b: string): void {
    if (!this.#installed) throw new Error('install() the network before cutting it');
    const ma = this.#members.find((m) => m.name === a);
    const mb = this.#members.find((m) => m.name === b);
    if (ma === undefined || mb === undefined || ma === mb) throw new Error(`cannot cut ${a} from ${b}`);
    this.#dropPeer(ma, mb);
    this.#dropPeer(mb, ma);
  }

  /** Everything from `from` to `to`'s peer port, and `to`'s answers on it. */
  #dropPeer(from: MemberSpec, to: MemberSpec): void {
    const port = String(to.peerPort);
    iptables(['-A', this.chain, '-s', from.host, '-d', to.host, '-p', 'tcp', '--dport', port, '-j', 'DROP']);
    iptables(['-A', this.chain, '-s', to.host, '-d', from.host, '-p', 'tcp', '--sport', port, '-j', 'DROP']);
  }

  /** Packets the current rules dropped so far: proof that a cut actually cut something. */
  droppedPackets(): number {
    if (!this.#installed) return 0;
    const listing = iptables(['-L', this.chain, '-n', '-v', '-x']);
    let total = 0;
    for (const line of listing.split('\n')) {
      const m = /^\s*(\d+)\s+\d+\s+DROP\b/.exec(line);
      if (m) total += Number(m[1]);
    }
    return total;
  }

  heal(): void {
    if (this.#installed) iptables(['-F', this.chain]);
  }

  /** Removes the jump and the chain. Safe to call more than once and from an 'exit' handler. */
  remove(): void {
    if (!this.#installed) return;
    this.#installed = false;
    this.#forget?.();
    this.#forget = null;
    removeChain(this.chain);
  }
}
