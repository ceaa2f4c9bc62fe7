/**
 * A message as the core sees it: bytes plus the few properties every
 * protocol can express. Protocol adapters cache their encoded form on the
 * message (`encoded`) so a fan-out to N subscribers encodes once per protocol
 * (and per variant, such as a STOMP subscription id), never once per subscriber.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { turnNow } from '../clock.js';
import type { Principal } from './auth.js';

/** Name/value pairs in order; repeats allowed. */
export type HeaderList = [name: string, value: string][];

export type Target =
  | { kind: 'topic'; topic: string }
  | { kind: 'queue'; name: string }
  | { kind: 'user'; userId: string; name: string };

export interface CoreMessage {
  /** Unique per message on this node: `<boot id>-<counter>`; queue messages carry their store id. */
  readonly id: string;
  readonly target: Target;
  readonly body: Buffer;
  /** Whether the body is valid UTF-8 (text protocols send it as text). */
  readonly textBody: boolean;
  readonly contentType: string | undefined;
  /** Application headers (STOMP custom headers, MQTT v5 user properties). */
  readonly headers: HeaderList;
  /** Delivery guarantee asked by the publisher (MQTT QoS); other protocols' messages count as 1. */
  readonly qos: 0 | 1 | 2;
  /** After this time (ms) the message is no longer delivered (MQTT v5 message expiry). */
  readonly expiresAt: number | undefined;
  /** Where answers go (MQTT v5 response topic, STOMP reply-to). */
  readonly replyTo: string | undefined;
  /** Request/response pairing data (MQTT v5 correlation data, STOMP correlation-id). */
  readonly correlation: Buffer | undefined;
  /** The publisher's retain flag (for MQTT retain-as-published). */
  readonly retain: boolean;
  /** MQTT v5 Payload Format Indicator as the publisher sent it (1: UTF-8 text), passed on unaltered [MQTT-3.3.2-4]. */
  readonly payloadFormat: 0 | 1 | undefined;
  /** Id of the stored message record (message service) this delivery carries, if any. */
  readonly recordId: string | undefined;
  /**
   * When set, only these users (ids) and staff (admins, services) get the
   * message: thread members, `$SYS` readers. Plain data, so it can cross nodes.
   */
  readonly audience: ReadonlySet<string> | undefined;
  /** Session that published it (for no-local), if any. */
  readonly publisherSession: string | undefined;
  readonly timestamp: number;
  /** Per-protocol encodings, filled lazily by adapters. */
  readonly encoded: Map<string, Buffer>;
}

/** Whether `p` may receive a message with this audience. */
export function inAudience(audience: ReadonlySet<string> | undefined, p: Principal): boolean {
  return audience === undefined || p.role !== 'user' || audience.has(p.userId);
}

const BOOT = randomBytes(4).toString('hex');
let counter = 0;

export function nextMessageId(): string {
  return `${BOOT}-${(++counter).toString(36)}`;
}

export interface MessageInit {
  target: Target;
  body: Buffer;
  contentType?: string | undefined;
  headers?: HeaderList;
  publisherSession?: string | undefined;
  recordId?: string | undefined;
  qos?: 0 | 1 | 2;
  expiresAt?: number | undefined;
  replyTo?: string | undefined;
  correlation?: Buffer | undefined;
  retain?: boolean;
  payloadFormat?: 0 | 1 | undefined;
  audience?: ReadonlySet<string> | undefined;
  id?: string;
  timestamp?: number;
}

const NO_HEADERS: HeaderList = [];

/**
 * The one shape every message has: a class whose fields are all set in its
 * constructor, in one order, from arguments (the publish path makes one per
 * message; reading a dozen fields off init objects of many shapes cost more
 * than the rest of the message). What not every delivery needs is made on
 * first use: the UTF-8 scan of the body (MQTT never asks) and the map of
 * encodings.
 */
class Message implements CoreMessage {
  declare readonly id: string;
  declare readonly target: Target;
  declare readonly body: Buffer;
  declare readonly qos: 0 | 1 | 2;
  declare readonly retain: boolean;
  declare readonly publisherSession: string | undefined;
  declare readonly contentType: string | undefined;
  declare readonly headers: HeaderList;
  declare readonly expiresAt: number | undefined;
  declare readonly replyTo: string | undefined;
  declare readonly correlation: Buffer | undefined;
  declare readonly payloadFormat: 0 | 1 | undefined;
  declare readonly recordId: string | undefined;
  declare readonly audience: ReadonlySet<string> | undefined;
  declare readonly timestamp: number;
  declare private text: boolean | undefined;
  declare private encodings: Map<string, Buffer> | undefined;

  constructor(id: string, target: Target, body: Buffer, qos: 0 | 1 | 2, retain: boolean, publisherSession: string | undefined, more: MessageInit | undefined) {
    this.id = id;
    this.target = target;
    this.body = body;
    this.qos = qos;
    this.retain = retain;
    this.publisherSession = publisherSession;
    if (more === undefined) {
      this.contentType = undefined;
      this.headers = NO_HEADERS;
      this.expiresAt = undefined;
      this.replyTo = undefined;
      this.correlation = undefined;
      this.payloadFormat = undefined;
      this.recordId = undefined;
      this.audience = undefined;
      this.timestamp = turnNow();
    } else {
      this.contentType = more.contentType;
      this.headers = more.headers ?? NO_HEADERS;
      this.expiresAt = more.expiresAt;
      this.replyTo = more.replyTo;
      this.correlation = more.correlation;
      this.payloadFormat = more.payloadFormat;
      this.recordId = more.recordId;
      this.audience = more.audience;
      this.timestamp = more.timestamp ?? turnNow();
    }
    this.text = undefined;
    this.encodings = undefined;
  }

  get textBody(): boolean {
    return (this.text ??= isUtf8(this.body));
  }

  get encoded(): Map<string, Buffer> {
    return (this.encodings ??= new Map());
  }
}

export function createMessage(init: MessageInit): CoreMessage {
  return new Message(init.id ?? nextMessageId(), init.target, init.body, init.qos ?? 1, init.retain ?? false, init.publisherSession, init);
}

/** A message with nothing but its target, body, QoS, retain flag and publisher (MQTT 3.1.1's PUBLISH): the fast way to make one. */
export function plainMessage(target: Target, body: Buffer, qos: 0 | 1 | 2, retain: boolean, publisherSession: string | undefined): CoreMessage {
  return new Message(nextMessageId(), target, body, qos, retain, publisherSession, undefined);
}

/** The same message under another id, with no encodings cached (they may carry the old id). */
export function withMessageId(msg: CoreMessage, id: string): CoreMessage {
  return new Message(id, msg.target, msg.body, msg.qos, msg.retain, msg.publisherSession, msg);
}
