import type { Entry } from '../../src/raft/types.js';
import { assert } from '../../src/util/assert.js';

/** One applied command: the log index it came from and its text. */
export interface AppliedCommand {
  readonly index: number;
  readonly command: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(command: string): Uint8Array {
  return encoder.encode(command);
}

export function decodeCommand(data: Uint8Array): string {
  return decoder.decode(data);
}

/**
 * The simulated state machine: an append-only list of applied commands and the applied index.
 * No-ops (empty entries) and config entries advance the index but add no command. Its snapshot
 * image is the list up to an index, so restoring from an image and replaying the log must give
 * the same list as applying every entry did.
 */
export class SimMachine {
  #applied: number;
  #commands: AppliedCommand[];

  constructor(applied = 0, commands: AppliedCommand[] = []) {
    this.#applied = applied;
    this.#commands = commands;
  }

  static fromImage(image: Uint8Array, index: number): SimMachine {
    if (image.byteLength === 0) {
      assert(index === 0, `an empty image at snapshot ${index}`);
      return new SimMachine();
    }
    const parsed = JSON.parse(decoder.decode(image)) as { index: number; commands: AppliedCommand[] };
    assert(parsed.index === index, `image is at ${parsed.index}, its snapshot at ${index}`);
    return new SimMachine(parsed.index, parsed.commands);
  }

  get applied(): number {
    return this.#applied;
  }

  get commands(): readonly AppliedCommand[] {
    return this.#commands;
  }

  /** Applies the next entry; returns its command, or null for a no-op or config entry. */
  apply(entry: Entry): string | null {
    assert(entry.index === this.#applied + 1, `apply ${entry.index} after ${this.#applied}: entries must come in order, each once`);
    this.#applied = entry.index;
    if (entry.type !== 'normal' || entry.data.byteLength === 0) return null;
    const command = decodeCommand(entry.data);
    this.#commands.push({ index: entry.index, command });
    return command;
  }

  /** The image at `index` (<= applied): the commands up to it. */
  image(index: number): Uint8Array {
    assert(index <= this.#applied, `image at ${index} beyond applied ${this.#applied}`);
    const commands = this.#commands.filter((c) => c.index <= index);
    return encoder.encode(JSON.stringify({ index, commands }));
  }
}
