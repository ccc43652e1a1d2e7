/**
 * A parser for `text/event-stream` (the WHATWG "server-sent events" format): feed it chunks,
 * get whole events. Lines end in LF, CRLF or CR; a blank line dispatches; `:` lines are comments.
 */

export interface SseEvent {
  /** `event:` field; "message" when absent. */
  readonly event: string;
  readonly data: string;
  /** `id:` field of this event, if it had one. */
  readonly id: string | undefined;
}

/** A line longer than this means the stream is not what we expect; stop rather than grow. */
export const MAX_SSE_LINE_CHARS = 8 * 1024 * 1024;

export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];
  #id: string | undefined = undefined;
  #sawCr = false;
  readonly #decoder = new TextDecoder('utf-8');

  /** Feed bytes; returns the events completed by them, in order. */
  push(chunk: Uint8Array | string): SseEvent[] {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    // A CRLF split across chunks: the LF after a CR we already ended a line on is not a new line.
    if (this.#sawCr && text.startsWith('\n')) text = text.slice(1);
    this.#sawCr = false;
    this.#buffer += text;
    const out: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const c = this.#buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.#line(this.#buffer.slice(start, i), out);
      if (c === 13) {
        if (i + 1 < this.#buffer.length) {
          if (this.#buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          this.#sawCr = true;
        }
      }
      start = i + 1;
    }
    this.#buffer = this.#buffer.slice(start);
    if (this.#buffer.length > MAX_SSE_LINE_CHARS) throw new Error(`event-stream line longer than ${MAX_SSE_LINE_CHARS} characters`);
    return out;
  }

  #line(line: string, out: SseEvent[]): void {
    if (line.length === 0) {
      if (this.#data.length > 0) out.push({ event: this.#event || 'message', data: this.#data.join('\n'), id: this.#id });
      this.#event = '';
      this.#data = [];
      this.#id = undefined;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
    else if (field === 'id' && !value.includes('\0')) this.#id = value;
    // `retry:` and unknown fields are ignored: the client has its own back-off.
  }
}
