/**
 * Which seeds a simulation run covers, from the environment:
 * - `FLOTILLA_SEED=<n>`: exactly that seed (the replay command a failure prints);
 * - `FLOTILLA_SEEDS=<count>` and `FLOTILLA_SEED_START=<n>`: a sweep of count seeds from n.
 */
export interface SeedOptions {
  readonly defaultCount: number;
  readonly defaultStart?: number;
}

/** Seeds are uint32 so that they print the same way everywhere and feed SeededRng exactly. */
const SEED_MAX = 0xffff_ffff;

export function seedsFromEnv(options: SeedOptions, env: NodeJS.ProcessEnv = process.env): number[] {
  const one = env['FLOTILLA_SEED'];
  if (one !== undefined && one !== '') return [parseSeed(one, 'FLOTILLA_SEED')];
  const count = env['FLOTILLA_SEEDS'] !== undefined ? parseSeed(env['FLOTILLA_SEEDS'], 'FLOTILLA_SEEDS') : options.defaultCount;
  const start = env['FLOTILLA_SEED_START'] !== undefined ? parseSeed(env['FLOTILLA_SEED_START'], 'FLOTILLA_SEED_START') : (options.defaultStart ?? 1);
  const seeds: number[] = [];
  for (let i = 0; i < count; i++) seeds.push(start + i);
  return seeds;
}

/** Split seeds into chunks so one vitest test covers many seeds (per-test overhead is not free). */
export function chunk(seeds: readonly number[], size: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < seeds.length; i += size) out.push(seeds.slice(i, i + size));
  return out;
}

function parseSeed(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > SEED_MAX) throw new Error(`${name} must be an integer in [0, ${SEED_MAX}], got "${text}"`);
  return n;
}
