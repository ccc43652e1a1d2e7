import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, test } from 'vitest';

/**
 * The Raft core is a pure, deterministic state machine: it may import only itself and the small
 * I/O-free helpers in src/util/ (never src/util/log.ts), and it never reads a clock, a random
 * source, a timer or the process. These checks keep it that way.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RAFT = join(ROOT, 'src', 'raft');
const UTIL = join(ROOT, 'src', 'util');
const UTIL_LOG = join(UTIL, 'log.ts');

function tsFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => join(dir, f));
}

function within(dir: string, file: string): boolean {
  const rel = relative(dir, file);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

function show(file: string): string {
  return relative(ROOT, file).split(sep).join('/');
}

/** Every module specifier a file names: static and type-only imports, re-exports, import(), require(). */
function specifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** `./x.js` from `file` → the absolute path of the .ts source it names. */
function resolveRelative(file: string, spec: string): string {
  const abs = resolve(dirname(file), spec);
  if (abs.endsWith('.js')) return abs.slice(0, -3) + '.ts';
  if (existsSync(abs + '.ts')) return abs + '.ts';
  return abs;
}

interface Import {
  readonly spec: string;
  /** The resolved source file for a relative specifier, else null. */
  readonly target: string | null;
}

function importsOf(file: string, text = readFileSync(file, 'utf8')): Import[] {
  return specifiers(text).map((spec) => ({
    spec,
    target: spec.startsWith('.') || spec.startsWith('/') ? resolveRelative(file, spec) : null,
  }));
}

/** What a file of `folder` may import: relative paths into `allowed` folders, never util/log.ts. */
function importViolations(file: string, imports: readonly Import[], allowed: readonly string[]): string[] {
  const out: string[] = [];
  for (const { spec, target } of imports) {
    if (spec.startsWith('node:')) out.push(`${show(file)} imports the Node built-in "${spec}"`);
    else if (target === null) out.push(`${show(file)} imports the package "${spec}"`);
    else if (target === UTIL_LOG) out.push(`${show(file)} imports src/util/log.ts ("${spec}")`);
    else if (!allowed.some((dir) => within(dir, target))) out.push(`${show(file)} imports "${spec}", outside ${allowed.map(show).join(' and ')}`);
  }
  return out;
}

const FORBIDDEN_MEMBERS: Record<string, readonly string[]> = {
  Math: ['random'],
  Date: ['now'],
  performance: ['now'],
};
const FORBIDDEN_IDENTIFIERS = new Set(['setTimeout', 'setInterval', 'setImmediate']);

/**
 * Uses of a clock, randomness, timers or the process in code (comments and strings do not count):
 * Math.random, Date.now, performance.now, setTimeout, setInterval, setImmediate, process.*
 */
function nondeterminism(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: string[] = [];
  const at = (node: ts.Node) => {
    const { line, character } = source.getLineAndCharacterOfPosition(node.getStart(source));
    return `${fileName}:${line + 1}:${character + 1}`;
  };
  const memberName = (node: ts.PropertyAccessExpression | ts.ElementAccessExpression): string | null => {
    if (ts.isPropertyAccessExpression(node)) return node.name.text;
    return ts.isStringLiteralLike(node.argumentExpression) ? node.argumentExpression.text : null;
  };
  const visit = (node: ts.Node): void => {
    if ((ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node)) && ts.isIdentifier(node.expression)) {
      const object = node.expression.text;
      const member = memberName(node);
      if (object === 'process') out.push(`${at(node)} uses process.${member ?? '[…]'}`);
      else if (member !== null && FORBIDDEN_MEMBERS[object]?.includes(member)) out.push(`${at(node)} uses ${object}.${member}`);
    }
    if (ts.isIdentifier(node) && FORBIDDEN_IDENTIFIERS.has(node.text)) out.push(`${at(node)} uses ${node.text}`);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

const raftFiles = tsFiles(RAFT);

describe('the checks themselves', () => {
  const fake = join(RAFT, 'fake.ts');
  const check = (text: string) => importViolations(fake, importsOf(fake, text), [RAFT, UTIL]);

  test('imports the rules allow', () => {
    expect(
      check(`
        import { a } from './types.js';
        import type { B } from '../util/rng.js';
        export { c } from './config.js';
      `),
    ).toEqual([]);
  });

  test.each([
    [`import { readFileSync } from 'node:fs';`, 'Node built-in'],
    [`import type { Socket } from 'node:net';`, 'Node built-in'],
    [`import fs from 'fs';`, 'package'],
    [`import { z } from 'zod';`, 'package'],
    [`import type { Logger } from 'pino';`, 'package'],
    [`export * from 'undici';`, 'package'],
    [`const m = await import('node:crypto');`, 'Node built-in'],
    [`const m = require('events');`, 'package'],
    [`import { Member } from '../member/member.js';`, 'outside'],
    [`import { x } from '../../test/sim/world.js';`, 'outside'],
    [`import { x } from '../util/../api/build-api.js';`, 'outside'],
    [`import { createLogger } from '../util/log.js';`, 'log.ts'],
  ])('catches %s', (text, why) => {
    const found = check(text);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(why);
  });

  test.each([
    'const r = Math.random();',
    'const t = Date.now();',
    'const t = performance.now();',
    'const t = Math["random"]();',
    'setTimeout(() => {}, 1);',
    'const h = setInterval(tick, 10);',
    'const t = globalThis.setTimeout;',
    'if (process.env.X) {}',
    'process.exit(1);',
    'const seed = process["pid"];',
  ])('catches %s', (text) => {
    expect(nondeterminism('fake.ts', text)).toHaveLength(1);
  });

  test('comments, strings and look-alike names are not code', () => {
    const text = `
      // Never call Math.random or Date.now here; no setTimeout either. process.exit is not ours.
      /** Timers (setInterval) live in the runtime; performance.now too. */
      const note = 'Math.random() Date.now() process.env setTimeout';
      const t = \`process.\${1}\`;
      function processMessage(m: number): number { return m; }
      const obj = { process: 1, now: 2, random: 3 };
      const x = obj.process + obj.now + obj.random;
    `;
    expect(nondeterminism('fake.ts', text)).toEqual([]);
  });
});

describe('src/raft is the pure core', () => {
  test('the core folder is where we expect it', () => {
    expect(raftFiles.map((f) => show(f))).toContain('src/raft/raft-core.ts');
    expect(raftFiles.map((f) => show(f))).toContain('src/raft/types.ts');
  });

  test.each(raftFiles.map((f) => [show(f), f]))('%s imports only src/raft and src/util (no node:*, no packages)', (_name, file) => {
    expect(importViolations(file, importsOf(file), [RAFT, UTIL])).toEqual([]);
  });

  test('every relative import of the core names a file that exists', () => {
    const missing: string[] = [];
    for (const file of raftFiles) {
      for (const { spec, target } of importsOf(file)) if (target !== null && !existsSync(target)) missing.push(`${show(file)}: ${spec}`);
    }
    expect(missing).toEqual([]);
  });

  test('the src/util files the core reaches import nothing outside src/util, and not log.ts', () => {
    const seen = new Set<string>();
    const queue = raftFiles.flatMap((f) => importsOf(f)).flatMap((i) => (i.target !== null && within(UTIL, i.target) ? [i.target] : []));
    const problems: string[] = [];
    while (queue.length > 0) {
      const file = queue.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      if (file === UTIL_LOG) {
        problems.push('the core reaches src/util/log.ts');
        continue;
      }
      if (!existsSync(file)) {
        problems.push(`${show(file)} does not exist`);
        continue;
      }
      const imports = importsOf(file);
      problems.push(...importViolations(file, imports, [UTIL]));
      for (const i of imports) if (i.target !== null && within(UTIL, i.target)) queue.push(i.target);
    }
    expect(problems).toEqual([]);
    // The core does use util (assert, rng, logger), so this check is not vacuous.
    expect(seen.size).toBeGreaterThan(0);
  });

  test('the core never imports src/util/log.ts (it takes a Logger interface instead)', () => {
    const offenders = raftFiles.filter((f) => importsOf(f).some((i) => i.target === UTIL_LOG));
    expect(offenders.map(show)).toEqual([]);
  });

  test.each(raftFiles.map((f) => [show(f), f]))('%s is deterministic: no clock, randomness, timers or process', (name, file) => {
    expect(nondeterminism(name, readFileSync(file, 'utf8'))).toEqual([]);
  });
});
