// The flotilla build a benchmark measures, isolated from the working tree.
import { cpSync, existsSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, run } from './proc.mjs';

/**
 * The flotilla build the run measures, in a temp dir of its own: bin/, dist/, package.json and a
 * link to the repository's node_modules. Either a copy of the current dist/ or, with --ref, that
 * commit's tree (git archive, read-only for the repository) compiled with the repository's tsc.
 */
export async function prepareBuild(REPO, ref, say, buildDir = null) {
  if (buildDir) {
    // A tree someone built elsewhere (an experiment, say): used as it is.
    for (const f of ['bin/flotilla.js', 'dist/cli/main.js', 'package.json', 'node_modules']) {
      if (!existsSync(join(buildDir, f))) throw new Error(`--build-dir=${buildDir} has no ${f}`);
    }
    return { dir: buildDir, commit: 'custom', dirty: true, source: `the prebuilt tree ${buildDir} (--build-dir)` };
  }
  const dir = await makeTempDir('build');
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  if (ref) {
    const commit = (await run('git', ['rev-parse', '--short', `${ref}^{commit}`], { cwd: REPO })).stdout.trim();
    if (!commit) throw new Error(`--ref=${ref}: no such commit`);
    say(`building flotilla ${commit} (${ref}) in ${dir} ...`);
    const tar = await run('sh', ['-c', `git -C '${REPO}' archive --format=tar '${commit}' | tar -x -C '${dir}'`]);
    if (tar.code !== 0) throw new Error(`git archive ${commit} failed: ${tar.stderr}`);
    const tsc = await run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.build.json')], { cwd: dir });
    if (tsc.code !== 0) throw new Error(`building ${commit} failed:\n${tsc.stdout}${tsc.stderr}`);
    return { dir, commit, dirty: false, source: `commit ${commit} (--ref=${ref}), built for this run` };
  }
  if (!existsSync(join(REPO, 'dist/cli/main.js'))) {
    say('dist/ is missing: building (npx tsc -p tsconfig.build.json) ...');
    const b = await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: REPO });
    if (b.code !== 0) throw new Error(`build failed:\n${b.stdout}${b.stderr}`);
  }
  cpSync(join(REPO, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(REPO, 'bin'), join(dir, 'bin'), { recursive: true });
  cpSync(join(REPO, 'package.json'), join(dir, 'package.json'));
  const builtAt = statSync(join(REPO, 'dist/cli/main.js')).mtime.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  const commit = (await run('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO })).stdout.trim() || 'unknown';
  const dirty = (await run('git', ['status', '--porcelain', '--', 'src', 'bin', 'package.json'], { cwd: REPO })).stdout.trim().length > 0;
  return { dir, commit, dirty, source: `dist/ as built at ${builtAt} (HEAD ${commit}${dirty ? ' plus uncommitted changes' : ''})` };
}

