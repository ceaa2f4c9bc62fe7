/** A JSON WebSocket client (the message service's protocol) that collects events. */
import { WebSocket } from 'ws';

export interface JsonEvent {
  event: string;
  data?: unknown;
  topic?: string;
}

export class JsonClient {
  readonly events: JsonEvent[] = [];
  closeCode: number | undefined;
  closeReason = '';
  private waiters: (() => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      this.events.push(JSON.parse(d.toString()) as JsonEvent);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
        this.wake();
      }),
    );
  }

  static open(url: string): Promise<JsonClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const c = new JsonClient(ws);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused with ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(obj: unknown): void {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /** Next event of the given kind (removed from the list). */
  async next(event: string, timeoutMs = 5000): Promise<JsonEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e) => e.event === event);
      if (i >= 0) return this.events.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0 || this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(`no "${event}" event; have ${this.events.map((e) => e.event).join(',') || 'none'}`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** A ping round trip: every message sent before it has been handled. */
  async sync(): Promise<void> {
    this.send({ action: 'ping' });
    await this.next('pong');
  }

  close(): void {
    this.ws.close();
  }
}

export interface MessageData {
  id: string;
  title: string;
  content: string;
  type: string | number;
  sender: string;
  createdAt: string;
}

/** The JSON WebSocket address of a test server for `token` (`/websocket/{token}`). */
export function jsonUrl(s: { url: string }, token: string): string {
  return s.url.replace(/^http/, 'ws') + '/websocket/' + token;
}
