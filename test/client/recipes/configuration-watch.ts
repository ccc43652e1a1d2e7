// Recipe: keep a live copy of every key under a prefix (docs/recipes/configuration-watch.md).
// In an application, import these from 'flotilla' instead of the repository's sources.
import type { Client } from '../../../src/client/client.js';

export type Configuration = ReadonlyMap<string, string>;

export interface FollowOptions {
  /** Called with the whole configuration after the load and after each change. */
  readonly onChange: (config: Configuration, revision: number) => void;
  /** Stops following. */
  readonly signal: AbortSignal;
}

/**
 * Load every key under `prefix`, then keep the copy current from a watch that starts right after
 * the load, so no change falls between the two. Runs until `signal` aborts. The watch resumes by
 * itself when a member dies; it throws CompactedError only if it was away longer than history
 * is kept (then load again).
 */
export async function followConfiguration(client: Client, prefix: string, options: FollowOptions): Promise<void> {
  const { onChange, signal } = options;
  const config = new Map<string, string>();
  // The revision of each key's latest change we applied (deletes too): a page read later than the
  // first one may already hold a change the watch then replays.
  const appliedAt = new Map<string, number>();
  let start: number | undefined;
  let after: string | undefined;
  for (;;) {
    const page = await client.list(prefix, { after, limit: 500, signal });
    start ??= page.revision;
    for (const kv of page.items) {
      config.set(kv.key, kv.value.toString('utf8'));
      appliedAt.set(kv.key, kv.modRevision);
    }
    if (!page.more || page.items.length === 0) break;
    after = page.items[page.items.length - 1].key;
  }
  onChange(config, start);

  for await (const event of client.watch(prefix, { prefix: true, fromRevision: start + 1, signal })) {
    if ((appliedAt.get(event.key) ?? 0) >= event.modRevision) continue;
    appliedAt.set(event.key, event.modRevision);
    if (event.type === 'put') config.set(event.key, event.value.toString('utf8'));
    else config.delete(event.key);
    onChange(config, event.modRevision);
  }
}
