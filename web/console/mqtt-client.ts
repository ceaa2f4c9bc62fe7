/**
 * An MQTT 5 client over WebSocket for the console's live debug, on the
 * codec in mqtt-codec.ts: connect, publish at QoS 0, 1 or 2 (waiting for
 * its acknowledgements), subscribe, unsubscribe, answer the server's QoS 1
 * and 2 deliveries, keep alive, and tell the page every packet each way.
 */
import { encodeAck, encodeConnect, encodeDisconnect, encodePingreq, encodePublish, encodeSubscribe, encodeUnsubscribe, PacketReader, reasonText, type Packet, type Properties, type QoS, type SubscribeOptions } from './mqtt-codec.js';

export type PublishPacket = Extract<Packet, { cmd: 'publish' }>;
type Ack = Extract<Packet, { packetId: number; reasonCode: number }>;
type SubAck = Extract<Packet, { reasonCodes: number[] }>;

export interface MqttClientEvents {
  /** A message the server delivered. */
  message(p: PublishPacket): void;
  /** Every packet, each way, in words (for the page's log). */
  packet(direction: 'in' | 'out', summary: string): void;
  /** The connection ended, and why. */
  closed(why: string): void;
}

interface Waiting {
  expect: Packet['cmd'];
  resolve(p: Packet): void;
  reject(err: Error): void;
}

const KEEPALIVE_S = 30;

export class MqttWsClient {
  private readonly reader = new PacketReader();
  private readonly waiting = new Map<number, Waiting>();
  private connack: ((p: Extract<Packet, { cmd: 'connack' }>) => void) | undefined;
  private nextId = 1;
  private ping: number | undefined;
  private ended = false;

  private constructor(
    private readonly ws: WebSocket,
    private readonly on: MqttClientEvents,
  ) {
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('message', (e) => {
      let packets: Packet[];
      try {
        packets = this.reader.push(new Uint8Array(e.data as ArrayBuffer));
      } catch (err) {
        this.on.packet('in', `unreadable bytes: ${(err as Error).message}`);
        return this.end();
      }
      for (const p of packets) this.receive(p);
    });
    ws.addEventListener('close', (e) => this.gone(`WebSocket closed (${e.code}${e.reason ? ': ' + e.reason : ''})`));
  }

  /** Opens the WebSocket and sends CONNECT; resolves with the client once the server accepts it. */
  static connect(url: string, login: { clientId: string; username: string; password: string }, on: MqttClientEvents): Promise<{ client: MqttWsClient; sessionPresent: boolean; properties: Properties }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, ['mqtt']);
      const client = new MqttWsClient(ws, on);
      ws.addEventListener('error', () => reject(new Error(`could not open ${url}`)));
      ws.addEventListener('close', () => reject(new Error('the connection closed before CONNACK')));
      ws.addEventListener('open', () => {
        client.connack = (p) => {
          if (p.reasonCode >= 0x80) return reject(new Error(`the server refused the connection: ${p.properties.reasonString ?? reasonText(p.reasonCode)}`));
          client.ping = window.setInterval(() => client.send(encodePingreq(), 'PINGREQ'), KEEPALIVE_S * 1000);
          resolve({ client, sessionPresent: p.sessionPresent, properties: p.properties });
        };
        client.send(encodeConnect({ ...login, keepalive: KEEPALIVE_S, cleanStart: true }), `CONNECT client id ${login.clientId}, MQTT 5, clean start`);
      });
    });
  }

  get open(): boolean {
    return !this.ended && this.ws.readyState === WebSocket.OPEN;
  }

  /** Publishes; resolves once acknowledged as QoS asks (at once for QoS 0), with the outcome in words. */
  async publish(topic: string, payload: Uint8Array, o: { qos: QoS; retain: boolean; properties: Properties }): Promise<string> {
    const packetId = o.qos > 0 ? this.id() : undefined;
    const done = packetId !== undefined ? this.expect(packetId, o.qos === 1 ? 'puback' : 'pubrec') : undefined;
    this.send(encodePublish({ topic, payload, qos: o.qos, retain: o.retain, ...(packetId !== undefined ? { packetId } : {}), properties: o.properties }), `PUBLISH ${topic} QoS ${o.qos}${o.retain ? ' retain' : ''}${packetId !== undefined ? ` id ${packetId}` : ''}, ${payload.length} bytes`);
    if (!done || packetId === undefined) return 'sent (QoS 0: no acknowledgement)';
    const ack = (await done) as Ack;
    if (ack.reasonCode >= 0x80) return `refused: ${ack.properties.reasonString ?? reasonText(ack.reasonCode)}`;
    if (o.qos === 1) return `acknowledged (PUBACK ${reasonText(ack.reasonCode)})`;
    const comp = this.expect(packetId, 'pubcomp');
    this.send(encodeAck('pubrel', packetId), `PUBREL id ${packetId}`);
    await comp;
    return `acknowledged (PUBREC ${reasonText(ack.reasonCode)}, PUBCOMP)`;
  }

  /** Subscribes; resolves with the reason code the server granted (the QoS, or a refusal ≥ 0x80). */
  async subscribe(filter: string, options: SubscribeOptions): Promise<{ code: number; reason?: string }> {
    const packetId = this.id();
    const done = this.expect(packetId, 'suback');
    this.send(encodeSubscribe(packetId, [[filter, options]]), `SUBSCRIBE ${filter} QoS ${options.qos} id ${packetId}`);
    const ack = (await done) as SubAck;
    return { code: ack.reasonCodes[0] ?? 0x80, ...(ack.properties.reasonString ? { reason: ack.properties.reasonString } : {}) };
  }

  async unsubscribe(filter: string): Promise<number> {
    const packetId = this.id();
    const done = this.expect(packetId, 'unsuback');
    this.send(encodeUnsubscribe(packetId, [filter]), `UNSUBSCRIBE ${filter} id ${packetId}`);
    return ((await done) as SubAck).reasonCodes[0] ?? 0x80;
  }

  /** Says goodbye (DISCONNECT) and closes. */
  end(): void {
    if (this.ws.readyState === WebSocket.OPEN) {
      this.send(encodeDisconnect(), 'DISCONNECT');
      this.ws.close(1000);
    }
    this.gone('disconnected');
  }

  // ---- inside ---------------------------------------------------------------------

  private id(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = (this.nextId % 65535) + 1;
      if (!this.waiting.has(id)) return id;
    }
  }

  private expect(packetId: number, cmd: Packet['cmd']): Promise<Packet> {
    return new Promise((resolve, reject) => this.waiting.set(packetId, { expect: cmd, resolve, reject }));
  }

  private send(bytes: Uint8Array, summary: string): void {
    if (this.ws.readyState !== WebSocket.OPEN) throw new Error('not connected');
    this.ws.send(bytes);
    if (!summary.startsWith('PING')) this.on.packet('out', summary);
  }

  private receive(p: Packet): void {
    if (p.cmd !== 'pingresp') this.on.packet('in', describe(p));
    switch (p.cmd) {
      case 'connack':
        this.connack?.(p);
        this.connack = undefined;
        return;
      case 'publish':
        if (p.qos === 1 && p.packetId !== undefined) this.send(encodeAck('puback', p.packetId), `PUBACK id ${p.packetId}`);
        if (p.qos === 2 && p.packetId !== undefined) this.send(encodeAck('pubrec', p.packetId), `PUBREC id ${p.packetId}`);
        this.on.message(p);
        return;
      case 'pubrel':
        this.send(encodeAck('pubcomp', p.packetId), `PUBCOMP id ${p.packetId}`);
        return;
      case 'puback':
      case 'pubrec':
      case 'pubcomp':
      case 'suback':
      case 'unsuback': {
        const w = this.waiting.get(p.packetId);
        if (w?.expect !== p.cmd) return;
        this.waiting.delete(p.packetId);
        w.resolve(p);
        return;
      }
      case 'disconnect':
        this.gone(`the server disconnected: ${p.properties.reasonString ?? reasonText(p.reasonCode)}`);
        return;
      default:
        return;
    }
  }

  private gone(why: string): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.ping);
    for (const w of this.waiting.values()) w.reject(new Error(why));
    this.waiting.clear();
    this.on.closed(why);
  }
}

/** A packet in words, with its properties. */
export function describe(p: Packet): string {
  switch (p.cmd) {
    case 'connack':
      return `CONNACK ${reasonText(p.reasonCode)}${p.sessionPresent ? ', session present' : ''}${props(p.properties)}`;
    case 'publish':
      return `PUBLISH ${p.topic} QoS ${p.qos}${p.retain ? ' retain' : ''}${p.dup ? ' dup' : ''}${p.packetId !== undefined ? ` id ${p.packetId}` : ''}, ${p.payload.length} bytes${props(p.properties)}`;
    case 'suback':
    case 'unsuback':
      return `${p.cmd.toUpperCase()} id ${p.packetId}: ${p.reasonCodes.map(reasonText).join(', ')}${props(p.properties)}`;
    case 'pingresp':
      return 'PINGRESP';
    case 'disconnect':
    case 'auth':
      return `${p.cmd.toUpperCase()} ${reasonText(p.reasonCode)}${props(p.properties)}`;
    default:
      return `${p.cmd.toUpperCase()} id ${p.packetId} ${reasonText(p.reasonCode)}${props(p.properties)}`;
  }
}

/** Properties in words: `; content type text/plain; user property k=v`. */
export function props(p: Properties): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(p) as [keyof Properties, unknown][]) {
    if (v === undefined) continue;
    if (k === 'userProperties') for (const [n, val] of v as [string, string][]) out.push(`user property ${n}=${val}`);
    else if (k === 'correlationData') out.push(`correlation data ${hex(v as Uint8Array)}`);
    else if (k === 'other') out.push(`other properties ${JSON.stringify(v)}`);
    else out.push(`${k.replace(/[A-Z]/g, (c) => ' ' + c.toLowerCase())} ${Array.isArray(v) ? v.join(', ') : String(v)}`);
  }
  return out.length ? '; ' + out.join('; ') : '';
}

export function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
}
