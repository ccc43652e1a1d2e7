import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

export type Handler = (req: SeenRequest, res: ServerResponse, raw: IncomingMessage) => void | Promise<void>;

/** A scripted HTTP server standing in for a member, recording every request it gets. */
export class FakeMember {
  readonly seen: SeenRequest[] = [];
  handler: Handler = (_req, res) => void res.writeHead(500).end();
  readonly #server: Server;
  url = '';

  private constructor() {
    this.#server = createServer((raw, res) => {
      const chunks: Buffer[] = [];
      raw.on('data', (c: Buffer) => chunks.push(c));
      raw.on('end', () => {
        const req = { method: raw.method ?? '', url: raw.url ?? '', headers: raw.headers, body: Buffer.concat(chunks) };
        this.seen.push(req);
        void this.handler(req, res, raw);
      });
    });
  }

  static async start(): Promise<FakeMember> {
    const m = new FakeMember();
    await new Promise<void>((resolve) => m.#server.listen(0, '127.0.0.1', resolve));
    m.url = `http://127.0.0.1:${(m.#server.address() as AddressInfo).port}`;
    return m;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

export function sendError(res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: { code, message: `fake ${code}` } }, headers);
}

/** A port nothing listens on (bound then released). */
export async function deadUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}
