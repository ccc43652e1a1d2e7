import { open } from 'node:fs/promises';

/** fsync of a file or a directory (a directory: so the names in it are durable). */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
