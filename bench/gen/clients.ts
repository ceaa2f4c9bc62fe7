/**
 * The generator's clients, one shape for both protocols:
 *  - MQTT 3.1.1 over TCP: CONNECT with user name and password (for Herald a
 *    login token as password), every received packet parsed by
 *    mqtt-packet's parser, QoS 0 PUBLISH encoded here (fixed header,
 *    topic, payload);
 *  - STOMP 1.2 over WebSocket on /stomp with the token in the CONNECT
 *    `login` header, as the customer-service chat client does, every frame
 *    parsed by the generator's own parser (stomp-frames.ts); or over TCP.
 *
 * A publisher encodes many messages straight into one buffer and writes it
 * once. `onPayload` gets every message body that arrives.
 */
import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { FrameParser, headerOf, type Frame } from './stomp-frames.js';
import { frameHeaderBytes, maskPayload, WsClient, writeFrameHeader } from './ws-client.js';
import type { Account, Endpoint } from '../lib/target.js';

export type Protocol = 'mqtt' | 'stomp';

export const PROTOCOL_LABEL: Record<Protocol, string> = { mqtt: 'MQTT 3.1.1/TCP', stomp: 'STOMP 1.2/WebSocket' };

/** Topic as segments: MQTT joins them with `/`, STOMP names `/topic/a.b.c`. */
export type Topic = string[];

export interface ConnOptions {
  endpoint: Endpoint;
  protocol: Protocol;
  /** Client number: picks the account round-robin and names the MQTT client id. */
  index: number;
  /** Prefix of the MQTT client id, unique per scenario and process. */
  idPrefix: string;
  localAddress?: string;
  localPort?: number;
  /** STOMP over TCP instead of WebSocket (the fan-out publisher's historical form). */
  stompOverTcp?: boolean;
  /** STOMP over WebSocket on /v1/ws with the token in `__token` (the media-service client) instead of /stomp with the token in `login`. */
  stompTokenInUrl?: boolean;
  timeoutMs?: number;
}

/** Writes whole messages (wire bytes) into a buffer; `bodyAt` is where the body starts, for stamping. */
export interface MessageEncoder {
  /** Wire bytes per message. */
  readonly bytes: number;
  /** Copies one message at `at` and returns the offset of its body; call `seal` after stamping. */
  place(buf: Buffer, at: number): number;
  /** Finishes the message placed at `at` (WebSocket: masks it). */
  seal(buf: Buffer, at: number): void;
}

export interface Conn {
  readonly protocol: Protocol;
  onPayload: (buf: Buffer, at: number, length: number) => void;
  onClose: (why: string) => void;
  closed: boolean;
  subscribe(topic: Topic): Promise<void>;
  encoder(topic: Topic, bodyTemplate: Buffer): MessageEncoder;
  /** Writes bytes built with an encoder; false when the socket's buffer is full (wait for 'drain'). */
  write(bytes: Buffer): boolean;
  readonly socket: Socket;
  close(): void;
  /** Closes with a TCP reset: no TIME_WAIT left on the generator's source port for the next run to trip on. */
  reset(): void;
}

export async function openConn(o: ConnOptions): Promise<Conn> {
  const account = o.endpoint.accounts[o.index % o.endpoint.accounts.length]!;
  if (o.protocol === 'mqtt') return MqttConn.open(o, account);
  return StompConn.open(o, account);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => {
      onTimeout();
      reject(new Error(`${what} not answered within ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e as Error);
      },
    );
  });
}

function varintBytes(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** MQTT 3.1.1 PUBLISH, QoS 0, to `topic` with a body shaped like `body`. */
export function mqttPublishEncoder(topic: Topic, body: Buffer): MessageEncoder {
  const name = Buffer.from(topic.join('/'));
  const head = Buffer.from([0x30, ...varintBytes(2 + name.length + body.length), name.length >> 8, name.length & 0xff]);
  const template = Buffer.concat([head, name, body]);
  const bodyOffset = head.length + name.length;
  return {
    bytes: template.length,
    place: (buf, at) => {
      template.copy(buf, at);
      return at + bodyOffset;
    },
    seal: () => undefined,
  };
}

/** STOMP SEND to `/topic/a.b` with content-length, alone (TCP) or in a masked WebSocket text frame. */
export function stompSendEncoder(topic: Topic, body: Buffer, webSocket: boolean): MessageEncoder {
  const stomp = Buffer.concat([Buffer.from(`SEND\ndestination:/topic/${topic.join('.')}\ncontent-length:${body.length}\n\n`), body, Buffer.from([0])]);
  const bodyIn = stomp.length - body.length - 1;
  if (!webSocket) {
    return {
      bytes: stomp.length,
      place: (buf, at) => {
        stomp.copy(buf, at);
        return at + bodyIn;
      },
      seal: () => undefined,
    };
  }
  const headBytes = frameHeaderBytes(stomp.length);
  return {
    bytes: headBytes + stomp.length,
    place: (buf, at) => {
      writeFrameHeader(buf, at, stomp.length, 0x1);
      stomp.copy(buf, at + headBytes);
      return at + headBytes + bodyIn;
    },
    seal: (buf, at) => maskPayload(buf, at + headBytes, stomp.length),
  };
}

/** What both protocols' connections do the same way: the socket, its writes and its closing. */
abstract class SocketConn {
  onPayload: (buf: Buffer, at: number, length: number) => void = () => undefined;
  onClose: (why: string) => void = () => undefined;
  closed = false;

  constructor(readonly socket: Socket) {}

  write(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  reset(): void {
    this.closed = true;
    if (!this.socket.destroyed) this.socket.resetAndDestroy();
  }
}

class MqttConn extends SocketConn implements Conn {
  readonly protocol = 'mqtt' as const;
  private waiting: { cmd: string; resolve: (p: mqttPacket.Packet) => void; reject: (e: Error) => void } | undefined;
  private nextId = 1;

  private constructor(socket: Socket) {
    super(socket);
  }

  static async open(o: ConnOptions, account: Account): Promise<MqttConn> {
    const socket = connect({ port: o.endpoint.mqttPort, host: '127.0.0.1', localAddress: o.localAddress, localPort: o.localPort });
    socket.setNoDelay(true);
    const c = new MqttConn(socket);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: mqttPacket.Packet) => c.onPacket(p));
    parser.on('error', (e: Error) => c.fail(`unparsable MQTT from the server: ${e.message}`));
    socket.on('data', (d: Buffer) => parser.parse(d));
    socket.on('error', (e) => c.fail(e.message));
    socket.on('close', () => c.fail('connection closed'));
    const connack = c.expect('connack');
    socket.once('connect', () => {
      socket.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: `${o.idPrefix}-${o.index}`,
          clean: true,
          keepalive: 0,
          username: account.username,
          ...(account.password ? { password: Buffer.from(account.password) } : {}),
        }),
      );
    });
    const ack = (await withTimeout(connack, o.timeoutMs ?? 30_000, 'MQTT CONNECT', () => socket.destroy())) as mqttPacket.IConnackPacket;
    if (ack.returnCode !== 0) {
      socket.destroy();
      throw new Error(`MQTT CONNECT refused with return code ${ack.returnCode}`);
    }
    return c;
  }

  private expect(cmd: string): Promise<mqttPacket.Packet> {
    return new Promise((resolve, reject) => (this.waiting = { cmd, resolve, reject }));
  }

  private fail(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(new Error(why));
    this.onClose(why);
  }

  private onPacket(p: mqttPacket.Packet): void {
    if (p.cmd === 'publish') {
      const body = p.payload as Buffer;
      this.onPayload(body, 0, body.length);
      return;
    }
    const w = this.waiting;
    if (w && w.cmd === p.cmd) {
      this.waiting = undefined;
      w.resolve(p);
    }
  }

  async subscribe(topic: Topic): Promise<void> {
    const suback = this.expect('suback');
    this.socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: this.nextId++, subscriptions: [{ topic: topic.join('/'), qos: 0 }] }));
    const p = (await withTimeout(suback, 30_000, 'MQTT SUBSCRIBE', () => this.socket.destroy())) as mqttPacket.ISubackPacket;
    if (p.granted[0] !== 0) throw new Error(`MQTT SUBSCRIBE ${topic.join('/')} refused (granted ${String(p.granted[0])})`);
  }

  encoder(topic: Topic, body: Buffer): MessageEncoder {
    return mqttPublishEncoder(topic, body);
  }

}

class StompConn extends SocketConn implements Conn {
  readonly protocol = 'stomp' as const;
  private readonly parser = new FrameParser();
  private waiting: { command: string; resolve: (f: Frame) => void; reject: (e: Error) => void } | undefined;
  private nextSub = 0;

  private constructor(
    socket: Socket,
    private readonly ws: WsClient | undefined,
  ) {
    super(socket);
  }

  static async open(o: ConnOptions, account: Account): Promise<StompConn> {
    let c: StompConn;
    if (o.stompOverTcp) {
      if (!o.endpoint.stompPort) throw new Error('this server has no STOMP TCP port');
      const socket = connect({ port: o.endpoint.stompPort, host: '127.0.0.1', localAddress: o.localAddress, localPort: o.localPort });
      socket.setNoDelay(true);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      c = new StompConn(socket, undefined);
      socket.on('data', (d: Buffer) => c.feed(d));
      socket.on('error', (e) => c.fail(e.message));
      socket.on('close', () => c.fail('connection closed'));
    } else {
      if (!o.endpoint.httpPort) throw new Error('this server has no WebSocket listener (STOMP needs Herald)');
      const ws = await WsClient.open({
        port: o.endpoint.httpPort,
        path: o.stompTokenInUrl ? `/v1/ws?__token=${encodeURIComponent(account.password)}` : '/stomp',
        protocols: ['v12.stomp', 'v11.stomp', 'v10.stomp'],
        localAddress: o.localAddress,
        localPort: o.localPort,
        timeoutMs: o.timeoutMs,
      });
      c = new StompConn(ws.socket, ws);
      ws.onMessage = (d) => c.feed(d);
      ws.onClose = (why) => c.fail(why);
    }
    const connected = c.expect('CONNECTED');
    const login = o.stompTokenInUrl ? '' : `login:${account.password || account.username}\n`;
    c.sendText(`CONNECT\naccept-version:1.2,1.1,1.0\nhost:127.0.0.1\n${login}heart-beat:0,0\n\n\0`);
    await withTimeout(connected, o.timeoutMs ?? 30_000, 'STOMP CONNECT', () => c.socket.destroy());
    return c;
  }

  private sendText(frame: string): void {
    if (this.ws) this.ws.send(frame);
    else this.socket.write(frame);
  }

  private expect(command: string): Promise<Frame> {
    return new Promise((resolve, reject) => (this.waiting = { command, resolve, reject }));
  }

  private fail(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(new Error(why));
    this.onClose(why);
  }

  private feed(d: Buffer): void {
    try {
      this.parser.feed(d, (f) => this.onFrame(f));
    } catch (err) {
      this.fail(`unparsable STOMP from the server: ${(err as Error).message}`);
    }
  }

  private onFrame(f: Frame): void {
    if (f.command === 'MESSAGE') {
      this.onPayload(f.body, 0, f.body.length);
      return;
    }
    if (f.command === 'ERROR') {
      this.fail(`STOMP ERROR: ${headerOf(f, 'message') ?? ''} ${f.body.toString('utf8', 0, 200)}`.trim());
      return;
    }
    const w = this.waiting;
    if (w && w.command === f.command) {
      this.waiting = undefined;
      w.resolve(f);
    }
  }

  async subscribe(topic: Topic): Promise<void> {
    const id = this.nextSub++;
    const receipt = this.expect('RECEIPT');
    this.sendText(`SUBSCRIBE\nid:${id}\ndestination:/topic/${topic.join('.')}\nack:auto\nreceipt:sub-${id}\n\n\0`);
    await withTimeout(receipt, 30_000, 'STOMP SUBSCRIBE', () => this.socket.destroy());
  }

  encoder(topic: Topic, body: Buffer): MessageEncoder {
    return stompSendEncoder(topic, body, this.ws !== undefined);
  }

}
