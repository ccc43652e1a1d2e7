import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { growthFactorFor } from '../../src/cli/young-generation.js';

// capYoungGeneration changes a process-wide V8 setting, so each case runs in a node process of
// its own, on the built module (`make test` builds first).
const MODULE = resolve(import.meta.dirname, '../../dist/cli/young-generation.js');
const MIB = 1024 * 1024;

/**
 * Runs a node process that (optionally) caps the young generation at capMiB, then allocates
 * objects that live long enough to make V8 grow it, and returns the semi-space size it ended with.
 */
function semiSpaceAfterLoad(capMiB: number | null, nodeFlags: string[] = []): number {
  if (!existsSync(MODULE)) throw new Error(`${MODULE} is missing: build first (make build)`);
  const script = `
    const { capYoungGeneration, semiSpaceBytes } = await import(${JSON.stringify(MODULE)});
    if (${capMiB !== null}) capYoungGeneration(${capMiB ?? 0} * 1024 * 1024);
    let keep = [];
    for (let i = 0; i < 6e6; i++) {
      keep.push({ i, s: 'v' + i });
      if (keep.length > 20000) keep = [];
      if (i % 10000 === 0) await new Promise((r) => setImmediate(r)); // lets the GC observer run
    }
    process.stdout.write(String(semiSpaceBytes()));
  `;
  const out = execFileSync(process.execPath, [...nodeFlags, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  return Number(out);
}

describe('capYoungGeneration', () => {
  test('without the cap, this load grows the semi-spaces past 8 MiB (so the next test can fail)', () => {
    expect(semiSpaceAfterLoad(null)).toBeGreaterThan(8 * MIB);
  });

  test('with the 8 MiB cap they grow to 8 MiB and stop there', () => {
    expect(semiSpaceAfterLoad(8)).toBe(8 * MIB);
  });

  test('an operator\'s own --max-semi-space-size wins', () => {
    expect(semiSpaceAfterLoad(8, ['--max-semi-space-size=4'])).toBe(4 * MIB);
  });
});

describe('growthFactorFor', () => {
  // V8 shrinks an idle member's young generation; a factor left at 1 would keep it at 1 MiB for
  // good (the first version did, and lost a third to a half of the throughput at 256 connections).
  test('V8\'s own factor below the cap, 1 at or above it', () => {
    expect(growthFactorFor(1 * MIB, 8 * MIB)).toBe(2);
    expect(growthFactorFor(4 * MIB, 8 * MIB)).toBe(2);
    expect(growthFactorFor(8 * MIB, 8 * MIB)).toBe(1);
    expect(growthFactorFor(16 * MIB, 8 * MIB)).toBe(1);
  });
});
