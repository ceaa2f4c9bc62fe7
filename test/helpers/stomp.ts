/** STOMP test clients: the real stompjs 2.3.x, and raw frames over TCP or WebSocket. */
import { createRequire } from 'node:module';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { StompParser, type StompFrame } from '../../src/protocols/stomp/codec.js';

const require = createRequire(import.meta.url);

export interface LegacyFrame {
  command: string;
  headers: Record<string, string>;
  body: string;
  ack(headers?: Record<string, string>): void;
  nack(headers?: Record<string, string>): void;
}
export interface LegacyClient {
  connect(headers: Record<string, string>, onConnect: (f: LegacyFrame) => void, onError: (e: LegacyFrame | string) => void): void;
  subscribe(dest: string, cb: (f: LegacyFrame) => void, headers?: Record<string, string>): { id: string; unsubscribe(): void };
  send(dest: string, headers: Record<string, string> | null, body: string): void;
  disconnect(cb: () => void): void;
  debug: ((m: string) => void) | null;
  connected: boolean;
  ws: WebSocket;
}
interface LegacyStomp {
  client(url: string, protocols?: string[]): LegacyClient;
  over(ws: unknown): LegacyClient;
  /** The library's own STOMP over TCP for Node (lib/stomp-node.js). */
  overTCP(host: string, port: number): LegacyClient;
  WebSocketClass: unknown;
}

/** stompjs 2.3.3 as the media-service notifications client uses it (`Stomp.client(url)`), with `ws` standing in for the browser WebSocket. */
export function legacyStomp(): LegacyStomp {
  const Stomp = require('stompjs') as LegacyStomp;
  Stomp.WebSocketClass = WebSocket;
  return Stomp;
}

export function wsUrl(httpUrl: string, path: string): string {
  return httpUrl.replace(/^http/, 'ws') + path;
}

/** Connects a stompjs 2.3 client; resolves on CONNECTED, rejects on the first error. */
export function connectLegacy(url: string, headers: Record<string, string> = {}): Promise<{ client: LegacyClient; errors: (LegacyFrame | string)[] }> {
  return connected(legacyStomp().client(url), headers);
}

/** Connects a stompjs 2.3 client over TCP (its Node transport); resolves on CONNECTED, rejects on the first error. */
export function connectLegacyTcp(port: number, headers: Record<string, string>): Promise<{ client: LegacyClient; errors: (LegacyFrame | string)[] }> {
  return connected(legacyStomp().overTCP('127.0.0.1', port), headers);
}

function connected(client: LegacyClient, headers: Record<string, string>): Promise<{ client: LegacyClient; errors: (LegacyFrame | string)[] }> {
  client.debug = null;
  const errors: (LegacyFrame | string)[] = [];
  return new Promise((resolve, reject) => {
    let connected = false;
    client.connect(
      headers,
      () => {
        connected = true;
        resolve({ client, errors });
      },
      (e) => {
        errors.push(e);
        if (!connected) reject(e);
      },
    );
  });
}

/** A STOMP peer that writes raw bytes and reads frames, for the codec edge cases. */
export class RawStomp {
  readonly frames: StompFrame[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  private readonly parser = new StompParser({ maxHeaderBytes: 1 << 20, maxHeaders: 1000, maxBodyBytes: 1 << 26 });
  heartbeats = 0;

  private constructor(private readonly write: (b: Buffer) => void, private readonly end: () => void, onClose: (cb: () => void) => void) {
    this.closedPromise = new Promise((r) =>
      onClose(() => {
        this.closed = true;
        r();
        this.wake();
      }),
    );
  }

  static tcp(port: number): Promise<RawStomp> {
    return new Promise((resolve, reject) => {
      const socket: Socket = connect(port, '127.0.0.1', () => resolve(raw));
      socket.once('error', reject);
      const raw = new RawStomp((b) => socket.write(b), () => socket.end(), (cb) => socket.on('close', cb));
      socket.on('data', (d: Buffer) => raw.onData(d));
    });
  }

  static ws(url: string, protocols: string[] = ['v12.stomp']): Promise<RawStomp & { socket: WebSocket; messages: { data: Buffer; isBinary: boolean }[] }> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, protocols);
      const messages: { data: Buffer; isBinary: boolean }[] = [];
      const raw = new RawStomp((b) => socket.send(b), () => socket.close(), (cb) => socket.on('close', cb));
      socket.on('message', (d: Buffer, isBinary) => {
        messages.push({ data: d, isBinary });
        raw.onData(d);
      });
      socket.once('open', () => resolve(Object.assign(raw, { socket, messages })));
      socket.once('error', reject);
    });
  }

  private onData(d: Buffer): void {
    this.parser.feed(d, (e) => {
      if (e.type === 'frame') this.frames.push(e.frame);
      else this.heartbeats++;
    });
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(data: string | Buffer): void {
    this.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  close(): void {
    this.end();
  }

  /** Waits for the next frame (optionally of a command) and removes it from the list. */
  async next(command?: string, timeoutMs = 5000): Promise<StompFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => command === undefined || f.command === command);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`connection closed while waiting for ${command ?? 'a frame'}; got ${this.frames.map((f) => f.command).join(',')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${command ?? 'a frame'}; got ${this.frames.map((f) => f.command).join(',')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** CONNECT (login/passcode or token) and wait for CONNECTED. */
  async connect(headers: Record<string, string>, version = '1.2'): Promise<StompFrame> {
    const lines = Object.entries({ 'accept-version': version, host: 'localhost', ...headers }).map(([k, v]) => `${k}:${v}`);
    this.send(`CONNECT\n${lines.join('\n')}\n\n\0`);
    return this.next();
  }
}

export function frameHeader(f: StompFrame, name: string): string | undefined {
  return f.headers.find(([k]) => k === name)?.[1];
}
