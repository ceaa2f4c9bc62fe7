/**
 * A small MQTT 5 packet codec for the console's live debug (the packets a
 * client sends and reads: CONNECT/CONNACK, PUBLISH and its acknowledgements,
 * SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, DISCONNECT),
 * written for the console rather than bundling an MQTT library (its
 * browser build is ~340 KB). Pure functions over bytes; `PacketReader`
 * reassembles packets split across WebSocket messages, or several in one.
 * Checked against mqtt-packet by test/unit/console-mqtt-codec.test.ts.
 */

export type QoS = 0 | 1 | 2;

/** MQTT 5 properties the console sets or shows. */
export interface Properties {
  payloadFormatIndicator?: number;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  subscriptionIdentifier?: number[];
  sessionExpiryInterval?: number;
  assignedClientIdentifier?: string;
  serverKeepAlive?: number;
  reasonString?: string;
  receiveMaximum?: number;
  topicAliasMaximum?: number;
  topicAlias?: number;
  maximumQoS?: number;
  retainAvailable?: number;
  userProperties?: [string, string][];
  maximumPacketSize?: number;
  wildcardSubscriptionAvailable?: number;
  subscriptionIdentifiersAvailable?: number;
  sharedSubscriptionAvailable?: number;
  serverReference?: string;
  responseInformation?: string;
  /** Any other property, by id, as its raw value. */
  other?: [number, unknown][];
}

export type Packet =
  | { cmd: 'connack'; sessionPresent: boolean; reasonCode: number; properties: Properties }
  | { cmd: 'publish'; topic: string; payload: Uint8Array; qos: QoS; retain: boolean; dup: boolean; packetId?: number; properties: Properties }
  | { cmd: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp'; packetId: number; reasonCode: number; properties: Properties }
  | { cmd: 'suback' | 'unsuback'; packetId: number; reasonCodes: number[]; properties: Properties }
  | { cmd: 'pingresp' }
  | { cmd: 'disconnect'; reasonCode: number; properties: Properties }
  | { cmd: 'auth'; reasonCode: number; properties: Properties };

const TYPES: Record<number, Packet['cmd']> = { 2: 'connack', 3: 'publish', 4: 'puback', 5: 'pubrec', 6: 'pubrel', 7: 'pubcomp', 9: 'suback', 11: 'unsuback', 13: 'pingresp', 14: 'disconnect', 15: 'auth' };

type Kind = 'byte' | 'u16' | 'u32' | 'varint' | 'string' | 'binary' | 'pair';
const PROPS: Record<number, [keyof Properties, Kind]> = {
  0x01: ['payloadFormatIndicator', 'byte'],
  0x02: ['messageExpiryInterval', 'u32'],
  0x03: ['contentType', 'string'],
  0x08: ['responseTopic', 'string'],
  0x09: ['correlationData', 'binary'],
  0x0b: ['subscriptionIdentifier', 'varint'],
  0x11: ['sessionExpiryInterval', 'u32'],
  0x12: ['assignedClientIdentifier', 'string'],
  0x13: ['serverKeepAlive', 'u16'],
  0x1a: ['responseInformation', 'string'],
  0x1c: ['serverReference', 'string'],
  0x1f: ['reasonString', 'string'],
  0x21: ['receiveMaximum', 'u16'],
  0x22: ['topicAliasMaximum', 'u16'],
  0x23: ['topicAlias', 'u16'],
  0x24: ['maximumQoS', 'byte'],
  0x25: ['retainAvailable', 'byte'],
  0x26: ['userProperties', 'pair'],
  0x27: ['maximumPacketSize', 'u32'],
  0x28: ['wildcardSubscriptionAvailable', 'byte'],
  0x29: ['subscriptionIdentifiersAvailable', 'byte'],
  0x2a: ['sharedSubscriptionAvailable', 'byte'],
};
/** Kinds of the properties the console does not name (authentication, will delay, requests). */
const OTHER_KINDS: Record<number, Kind> = { 0x15: 'string', 0x16: 'binary', 0x17: 'byte', 0x18: 'u32', 0x19: 'byte' };
const ID_OF = Object.fromEntries(Object.entries(PROPS).map(([id, [name, kind]]) => [name, [Number(id), kind]])) as Record<keyof Properties, [number, Kind]>;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

// ---- writing ---------------------------------------------------------------------

class Writer {
  private readonly parts: number[] = [];
  byte(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.byte(v >> 8).byte(v);
  }
  u32(v: number): this {
    return this.u16(Math.floor(v / 65536)).u16(v % 65536);
  }
  varint(v: number): this {
    do {
      let b = v % 128;
      v = Math.floor(v / 128);
      if (v > 0) b |= 0x80;
      this.byte(b);
    } while (v > 0);
    return this;
  }
  bytes(b: Uint8Array): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  binary(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }
  string(s: string): this {
    return this.binary(utf8.encode(s));
  }
  properties(p: Properties = {}): this {
    const w = new Writer();
    for (const [name, value] of Object.entries(p) as [keyof Properties, unknown][]) {
      if (value === undefined || name === 'other') continue;
      const [id, kind] = ID_OF[name];
      const values = kind === 'pair' ? (value as [string, string][]) : name === 'subscriptionIdentifier' ? (value as number[]) : [value];
      for (const v of values) {
        w.varint(id);
        if (kind === 'pair') w.string((v as [string, string])[0]).string((v as [string, string])[1]);
        else if (kind === 'string') w.string(v as string);
        else if (kind === 'binary') w.binary(v as Uint8Array);
        else w[kind](v as number);
      }
    }
    return this.varint(w.length).bytes(w.done());
  }
  get length(): number {
    return this.parts.length;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

function packet(first: number, body: Writer): Uint8Array {
  return new Writer().byte(first).varint(body.length).bytes(body.done()).done();
}

export function encodeConnect(o: { clientId: string; username?: string; password?: string; keepalive: number; cleanStart: boolean; properties?: Properties }): Uint8Array {
  const flags = (o.username !== undefined ? 0x80 : 0) | (o.password !== undefined ? 0x40 : 0) | (o.cleanStart ? 0x02 : 0);
  const w = new Writer().string('MQTT').byte(5).byte(flags).u16(o.keepalive).properties(o.properties).string(o.clientId);
  if (o.username !== undefined) w.string(o.username);
  if (o.password !== undefined) w.string(o.password);
  return packet(0x10, w);
}

export function encodePublish(o: { topic: string; payload: Uint8Array; qos: QoS; retain: boolean; dup?: boolean; packetId?: number; properties?: Properties }): Uint8Array {
  const w = new Writer().string(o.topic);
  if (o.qos > 0) w.u16(o.packetId ?? 0);
  w.properties(o.properties).bytes(o.payload);
  return packet(0x30 | (o.dup ? 0x08 : 0) | (o.qos << 1) | (o.retain ? 1 : 0), w);
}

/** PUBACK, PUBREC, PUBREL or PUBCOMP with a reason code (0: success). */
export function encodeAck(cmd: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp', packetId: number, reasonCode = 0): Uint8Array {
  const first = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 }[cmd];
  return packet(first, new Writer().u16(packetId).byte(reasonCode).varint(0));
}

export interface SubscribeOptions {
  qos: QoS;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  /** 0: send retained messages; 1: only for a new subscription; 2: never. */
  retainHandling?: 0 | 1 | 2;
}

export function encodeSubscribe(packetId: number, filters: [string, SubscribeOptions][], properties?: Properties): Uint8Array {
  const w = new Writer().u16(packetId).properties(properties);
  for (const [f, o] of filters) w.string(f).byte(o.qos | (o.noLocal ? 4 : 0) | (o.retainAsPublished ? 8 : 0) | ((o.retainHandling ?? 0) << 4));
  return packet(0x82, w);
}

export function encodeUnsubscribe(packetId: number, filters: string[]): Uint8Array {
  const w = new Writer().u16(packetId).properties();
  for (const f of filters) w.string(f);
  return packet(0xa2, w);
}

export const encodePingreq = (): Uint8Array => Uint8Array.of(0xc0, 0);
export const encodeDisconnect = (reasonCode = 0): Uint8Array => Uint8Array.of(0xe0, 2, reasonCode, 0);

// ---- reading ---------------------------------------------------------------------

export class MqttDecodeError extends Error {}

class Reader {
  constructor(
    private readonly b: Uint8Array,
    private i = 0,
    private readonly end = b.length,
  ) {}
  get left(): number {
    return this.end - this.i;
  }
  private need(n: number): void {
    if (this.i + n > this.end) throw new MqttDecodeError('packet ends too early');
  }
  byte(): number {
    this.need(1);
    return this.b[this.i++]!;
  }
  u16(): number {
    return this.byte() * 256 + this.byte();
  }
  u32(): number {
    return this.u16() * 65536 + this.u16();
  }
  varint(): number {
    let v = 0;
    for (let mul = 1, n = 0; ; mul *= 128, n++) {
      if (n === 4) throw new MqttDecodeError('variable byte integer longer than 4 bytes');
      const b = this.byte();
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
    }
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const out = this.b.slice(this.i, this.i + n);
    this.i += n;
    return out;
  }
  binary(): Uint8Array {
    return this.bytes(this.u16());
  }
  string(): string {
    return fromUtf8.decode(this.binary());
  }
  rest(): Uint8Array {
    return this.bytes(this.left);
  }
  properties(): Properties {
    const len = this.varint();
    this.need(len);
    const r = new Reader(this.b, this.i, this.i + len);
    this.i += len;
    const p: Properties = {};
    const bag = p as Record<string, unknown>;
    while (r.left > 0) {
      const id = r.varint();
      const known = PROPS[id];
      const kind = known?.[1] ?? OTHER_KINDS[id];
      if (!kind) throw new MqttDecodeError(`unknown property 0x${id.toString(16)}`);
      const value = kind === 'pair' ? ([r.string(), r.string()] as [string, string]) : kind === 'string' ? r.string() : kind === 'binary' ? r.binary() : r[kind]();
      if (!known) (p.other ??= []).push([id, value]);
      else if (kind === 'pair') (p.userProperties ??= []).push(value as [string, string]);
      else if (known[0] === 'subscriptionIdentifier') (p.subscriptionIdentifier ??= []).push(value as number);
      else bag[known[0]] = value;
    }
    return p;
  }
}

/** One whole packet (fixed header included) → its fields. */
export function decodePacket(bytes: Uint8Array): Packet {
  const head = new Reader(bytes);
  const first = head.byte();
  const length = head.varint();
  const r = new Reader(bytes, bytes.length - length);
  const cmd = TYPES[first >> 4];
  switch (cmd) {
    case 'connack': {
      const sessionPresent = (r.byte() & 1) === 1;
      return { cmd, sessionPresent, reasonCode: r.byte(), properties: r.left > 0 ? r.properties() : {} };
    }
    case 'publish': {
      const bits = (first >> 1) & 3;
      if (bits === 3) throw new MqttDecodeError('PUBLISH with QoS 3');
      const qos = bits as QoS;
      const topic = r.string();
      const packetId = qos > 0 ? r.u16() : undefined;
      const properties = r.properties();
      return { cmd, topic, qos, retain: (first & 1) === 1, dup: (first & 8) === 8, ...(packetId !== undefined ? { packetId } : {}), properties, payload: r.rest() };
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp': {
      const packetId = r.u16();
      const reasonCode = r.left > 0 ? r.byte() : 0;
      return { cmd, packetId, reasonCode, properties: r.left > 0 ? r.properties() : {} };
    }
    case 'suback':
    case 'unsuback': {
      const packetId = r.u16();
      const properties = r.properties();
      return { cmd, packetId, properties, reasonCodes: [...r.rest()] };
    }
    case 'pingresp':
      return { cmd };
    case 'disconnect':
    case 'auth':
      return { cmd, reasonCode: r.left > 0 ? r.byte() : 0, properties: r.left > 0 ? r.properties() : {} };
    default:
      throw new MqttDecodeError(`a client does not receive packets of type ${first >> 4}`);
  }
}

/** Cuts a byte stream into whole packets, however they arrive. */
export class PacketReader {
  private buf = new Uint8Array(0);

  /** Adds bytes; returns the packets now whole, in order. */
  push(chunk: Uint8Array): Packet[] {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf);
    joined.set(chunk, this.buf.length);
    const out: Packet[] = [];
    let at = 0;
    for (;;) {
      const whole = packetLength(joined, at);
      if (whole === undefined || at + whole > joined.length) break;
      out.push(decodePacket(joined.subarray(at, at + whole)));
      at += whole;
    }
    this.buf = joined.slice(at);
    return out;
  }
}

/** The whole length of the packet starting at `at`, or undefined while its header is incomplete. */
function packetLength(b: Uint8Array, at: number): number | undefined {
  let len = 0;
  for (let i = 1, mul = 1; i <= 4; i++, mul *= 128) {
    if (at + i >= b.length) return undefined;
    const x = b[at + i]!;
    len += (x & 0x7f) * mul;
    if ((x & 0x80) === 0) return 1 + i + len;
  }
  throw new MqttDecodeError('remaining length longer than 4 bytes');
}

/** MQTT 5 reason codes in words (those a client meets). */
export const REASONS: Record<number, string> = {
  0x00: 'success',
  0x01: 'granted QoS 1',
  0x02: 'granted QoS 2',
  0x04: 'disconnect with will',
  0x10: 'no matching subscribers',
  0x11: 'no subscription existed',
  0x80: 'unspecified error',
  0x81: 'malformed packet',
  0x82: 'protocol error',
  0x83: 'implementation specific error',
  0x84: 'unsupported protocol version',
  0x85: 'client identifier not valid',
  0x86: 'bad user name or password',
  0x87: 'not authorized',
  0x88: 'server unavailable',
  0x89: 'server busy',
  0x8a: 'banned',
  0x8b: 'server shutting down',
  0x8d: 'keep alive timeout',
  0x8e: 'session taken over',
  0x8f: 'topic filter invalid',
  0x90: 'topic name invalid',
  0x91: 'packet identifier in use',
  0x93: 'receive maximum exceeded',
  0x95: 'packet too large',
  0x96: 'message rate too high',
  0x97: 'quota exceeded',
  0x98: 'administrative action',
  0x99: 'payload format invalid',
  0x9a: 'retain not supported',
  0x9b: 'QoS not supported',
  0x9e: 'shared subscriptions not supported',
  0x9f: 'connection rate exceeded',
  0xa1: 'subscription identifiers not supported',
  0xa2: 'wildcard subscriptions not supported',
};

export const reasonText = (code: number): string => `${REASONS[code] ?? 'reason'} (0x${code.toString(16).padStart(2, '0')})`;
