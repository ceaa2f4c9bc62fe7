/**
 * A message as the core sees it: bytes plus the few properties every
 * protocol can express. Protocol adapters cache their encoded form on the
 * message (`encoded`) so a fan-out to N subscribers encodes once per protocol
 * (and per variant, such as a STOMP subscription id), never once per subscriber.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
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
 * The one shape every message has (a class, so the publish path builds it
 * with one monomorphic allocation). What not every delivery needs is made on
 * first use: the UTF-8 scan of the body (MQTT never asks) and the map of
 * encodings.
 */
class Message implements CoreMessage {
  readonly id: string;
  readonly target: Target;
  readonly body: Buffer;
  readonly contentType: string | undefined;
  readonly headers: HeaderList;
  readonly qos: 0 | 1 | 2;
  readonly expiresAt: number | undefined;
  readonly replyTo: string | undefined;
  readonly correlation: Buffer | undefined;
  readonly retain: boolean;
  readonly payloadFormat: 0 | 1 | undefined;
  readonly recordId: string | undefined;
  readonly audience: ReadonlySet<string> | undefined;
  readonly publisherSession: string | undefined;
  readonly timestamp: number;
  private text: boolean | undefined = undefined;
  private encodings: Map<string, Buffer> | undefined = undefined;

  constructor(init: MessageInit, id: string) {
    this.id = id;
    this.target = init.target;
    this.body = init.body;
    this.contentType = init.contentType;
    this.headers = init.headers ?? NO_HEADERS;
    this.qos = init.qos ?? 1;
    this.expiresAt = init.expiresAt;
    this.replyTo = init.replyTo;
    this.correlation = init.correlation;
    this.retain = init.retain ?? false;
    this.payloadFormat = init.payloadFormat;
    this.recordId = init.recordId;
    this.audience = init.audience;
    this.publisherSession = init.publisherSession;
    this.timestamp = init.timestamp ?? Date.now();
  }

  get textBody(): boolean {
    return (this.text ??= isUtf8(this.body));
  }

  get encoded(): Map<string, Buffer> {
    return (this.encodings ??= new Map());
  }
}

export function createMessage(init: MessageInit): CoreMessage {
  return new Message(init, init.id ?? nextMessageId());
}

/** The same message under another id, with no encodings cached (they may carry the old id). */
export function withMessageId(msg: CoreMessage, id: string): CoreMessage {
  return new Message(msg, id);
}
