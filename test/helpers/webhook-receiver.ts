/**
 * A webhook receiver inside the test process, on a loopback port: it checks
 * every request's signature the way the guide tells receivers to (written
 * here on its own, not with Herald's code), keeps each event, and can be
 * told to fail or be taken down and brought back on the same port.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ReceivedEvent {
  id: string;
  type: string;
  createdAt: string;
  data: Record<string, unknown>;
}

export interface Request {
  headers: IncomingMessage['headers'];
  body: string;
  /** Whether Herald-Signature verified with the receiver's secret, and Herald-Event-Id matched the body's id. */
  valid: boolean;
  at: number;
}

/** The check of the guide: t within 5 minutes, v1 = HMAC-SHA256(secret, t + "." + body), compared in constant time. */
export function verify(secret: string, header: string | undefined, body: string, nowMs = Date.now()): boolean {
  if (!header) return false;
  const fields = Object.fromEntries(header.split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  const t = Number(fields['t']);
  if (!Number.isInteger(t) || Math.abs(nowMs / 1000 - t) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${fields['t']}.${body}`).digest();
  const got = Buffer.from(fields['v1'] ?? '', 'hex');
  return got.length === expected.length && timingSafeEqual(got, expected);
}

export class WebhookReceiver {
  readonly requests: Request[] = [];
  /** Every valid request's event, in arrival order (duplicates included). */
  readonly received: ReceivedEvent[] = [];
  /** What to answer: a status, or a function of the event. */
  answer: number | ((e: ReceivedEvent) => number) = 200;
  /** Delay before answering, ms. */
  delayMs = 0;
  private server: Server;
  private readonly sockets = new Set<Socket>();
  private port = 0;
  private waiters: (() => void)[] = [];
  /** While set, requests wait here before they are answered. */
  private held: (() => void)[] | undefined;

  private constructor(readonly secret: string) {
    this.server = this.make();
  }

  static async start(secret = 'test-secret-' + Math.random().toString(36).slice(2)): Promise<WebhookReceiver> {
    const r = new WebhookReceiver(secret);
    await r.listen();
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  private make(): Server {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    return server;
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    let event: ReceivedEvent | undefined;
    try {
      event = JSON.parse(body) as ReceivedEvent;
    } catch {
      event = undefined;
    }
    const valid =
      req.method === 'POST' &&
      req.headers['content-type'] === 'application/json' &&
      verify(this.secret, req.headers['herald-signature'] as string | undefined, body) &&
      event !== undefined &&
      req.headers['herald-event-id'] === event.id &&
      req.headers['herald-timestamp'] === /t=(\d+)/.exec(String(req.headers['herald-signature']))?.[1];
    this.requests.push({ headers: req.headers, body, valid, at: Date.now() });
    this.wake();
    if (this.held) await new Promise<void>((r) => this.held!.push(r));
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (!valid || !event) {
      res.writeHead(400).end('bad signature');
      this.wake();
      return;
    }
    const status = typeof this.answer === 'number' ? this.answer : this.answer(event);
    // Only what was acknowledged counts as received (a failed attempt will come again).
    if (status >= 200 && status < 300) this.received.push(event);
    res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'try again later');
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Events acknowledged, each id once (what a receiver that dedupes by Herald-Event-Id keeps). */
  unique(): ReceivedEvent[] {
    const seen = new Set<string>();
    return this.received.filter((e) => !seen.has(e.id) && (seen.add(e.id), true));
  }

  ofType(type: string): ReceivedEvent[] {
    return this.unique().filter((e) => e.type === type);
  }

  /** Waits until `check` holds (checked after every request and every 50 ms). */
  async until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.unique().map((e) => e.type);
        throw new Error(`timed out waiting for ${what}; received ${seen.length}: ${seen.slice(-20).join(', ')}`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Requests from now on are not answered until `release`. */
  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const waiting = this.held ?? [];
    this.held = undefined;
    for (const f of waiting) f();
  }

  /** Nothing listens on the port any more (connections refused), open connections are cut. */
  async down(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  /** Listening again on the same port. */
  async up(): Promise<void> {
    this.server = this.make();
    await this.listen();
  }

  async stop(): Promise<void> {
    this.release();
    if (this.server.listening) await this.down();
  }
}
