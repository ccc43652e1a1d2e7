import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';

export interface MemberAddress {
  readonly name: string;
  readonly peerUrl: string;
}

const FILE = 'cluster.json';

/**
 * The founding members' peer URLs, kept beside the database: `--initial-cluster` is ignored once
 * the data dir holds state, so a restart must find the peers here. Written atomically (temp file,
 * fsync, rename).
 */
export class ClusterFile {
  constructor(readonly dataDir: string) {}

  async read(): Promise<MemberAddress[] | null> {
    let text: string;
    try {
      text = await readFile(join(this.dataDir, FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const parsed = JSON.parse(text) as { members?: unknown };
    if (!Array.isArray(parsed.members)) throw new Error(`${join(this.dataDir, FILE)} is damaged: no member list`);
    return parsed.members.map((m: { name?: unknown; peerUrl?: unknown }) => {
      if (typeof m.name !== 'string' || typeof m.peerUrl !== 'string') throw new Error(`${join(this.dataDir, FILE)} is damaged`);
      return { name: m.name, peerUrl: m.peerUrl };
    });
  }

  async write(members: readonly MemberAddress[]): Promise<void> {
    await mkdir(this.dataDir, { recursive: true });
    const tmp = join(this.dataDir, `${FILE}.tmp`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify({ members }, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dataDir, FILE));
  }
}
