/**
 * What a STOMP frame may carry of a message, both ways: the headers the
 * protocol owns (never taken from a SEND into a message, nor from a message
 * into a MESSAGE), and the MESSAGE frame a subscription receives.
 */
import { isUtf8 } from 'node:buffer';
import { topicToDotted } from '../../core/destination.js';
import type { CoreMessage, HeaderList } from '../../core/message.js';
import { frameBytes, headerLine, valueLine, type StompFrame } from './codec.js';

export type Version = '1.0' | '1.1' | '1.2';
export type AckMode = 'auto' | 'client' | 'client-individual';

/** What the MESSAGE frame needs of the subscription it goes to. */
export interface MessageFrameSubscription {
  readonly id: string;
  /** Destination as the client wrote it (named in MESSAGE frames of user mailboxes). */
  readonly destination: string;
  readonly ackMode: AckMode;
}

/**
 * Headers the protocol owns. A SEND's other headers travel with the message;
 * these never do, and a MESSAGE never takes them from a message's headers
 * (MQTT 5 user properties, HTTP publish headers): a `content-length` or
 * `message-id` from there would let a publisher forge frames. Compared after
 * trimming, as lenient clients trim names.
 */
const RESERVED = new Set([
  'destination',
  'content-length',
  'content-type',
  'receipt',
  'receipt-id',
  'transaction',
  'message-id',
  'subscription',
  'ack',
  'redelivered',
  'id',
  'version',
  'heart-beat',
  'session',
  'server',
  'content-transfer-encoding',
]);

/**
 * The headers of a SEND that travel with the message: not the protocol's own,
 * the first of repeats, and none holding a NUL (no other protocol can carry
 * one: MQTT strings forbid it, and stomp.js 2.x would end the frame there).
 */
export function customHeaders(frame: StompFrame): HeaderList {
  const out: HeaderList = [];
  let seen: Set<string> | undefined;
  for (const h of frame.headers) {
    const k = h[0];
    const v = h[1];
    const name = k.trim();
    if (RESERVED.has(name) || k.includes('\0') || v.includes('\0')) continue;
    // Most SENDs carry none of these: the set of names seen is made for the first one.
    if (seen === undefined) seen = new Set();
    else if (seen.has(name)) continue;
    seen.add(name);
    out.push([k, v]);
  }
  return out;
}

/**
 * stomp.js 2.x, the STOMP 1.0/1.1 client of browsers, ends a frame at the
 * first NUL whatever its content-length says, so a body holding a NUL would
 * reach it cut short, the rest read as a frame of its own: a publisher could
 * forge MESSAGE frames. Over WebSocket to 1.0/1.1 sessions such a body goes
 * base64-encoded, marked `content-transfer-encoding:base64`; nothing is lost.
 * STOMP 1.2 clients and TCP clients honour content-length and get it as is.
 */
function bodyFor(msg: CoreMessage, version: Version, framing: string): { body: Buffer; base64: boolean } {
  if (version === '1.2' || framing !== 'ws' || !msg.body.includes(0)) return { body: msg.body, base64: false };
  return { body: Buffer.from(msg.body.toString('base64')), base64: true };
}

/**
 * A topic's destination line in MESSAGE frames with escapes (STOMP 1.1 and
 * 1.2: `destination:/topic/a.b`), kept for topics seen lately: no splitting
 * and escaping per message.
 */
const topicDestinationLines = new Map<string, string>();
const MAX_TOPIC_DESTINATIONS = 4096;

function topicDestinationLine(topic: string, escape: boolean): string {
  if (!escape) return valueLine('destination:', '/topic/' + topicToDotted(topic), false);
  let line = topicDestinationLines.get(topic);
  if (line === undefined) {
    line = valueLine('destination:', '/topic/' + topicToDotted(topic), true);
    if (topic.length <= 256) {
      if (topicDestinationLines.size >= MAX_TOPIC_DESTINATIONS) topicDestinationLines.clear();
      topicDestinationLines.set(topic, line);
    }
  }
  return line;
}

/** The subscription line written last: the subscribers of a message mostly share their id (`sub-0`). */
const lastSubscriptionLine = { id: '', escape: true, line: valueLine('subscription:', '', true) };

function subscriptionLine(id: string, escape: boolean): string {
  const last = lastSubscriptionLine;
  if (last.id !== id || last.escape !== escape) {
    last.id = id;
    last.escape = escape;
    last.line = valueLine('subscription:', id, escape);
  }
  return last.line;
}

/** The MESSAGE frame a subscription gets for a message (its bare STOMP bytes). */
export function encodeMessageFrame(sub: MessageFrameSubscription, msg: CoreMessage, redelivered: boolean, version: Version, framing: string): Buffer {
  return messageFrame(sub, msg, redelivered, version, framing, undefined);
}

/**
 * The MESSAGE frame, ready to write: over WebSocket already inside its
 * WebSocket frame (text when the body is UTF-8), built in one buffer.
 */
export function preparedMessageFrame(sub: MessageFrameSubscription, msg: CoreMessage, redelivered: boolean, version: Version, framing: string): Buffer {
  return messageFrame(sub, msg, redelivered, version, framing, framing === 'ws' ? msg.textBody : undefined);
}

/**
 * The headers, in this order: subscription, message-id, destination, ack
 * (1.2, client acks), redelivered, content-type, content-transfer-encoding,
 * reply-to, correlation-id, then the message's own headers. Written as
 * encodeFrame writes a header list (escaped, unwritable ones dropped), without
 * building the list.
 */
function messageFrame(sub: MessageFrameSubscription, msg: CoreMessage, redelivered: boolean, version: Version, framing: string, wsText: boolean | undefined): Buffer {
  const t = msg.target;
  const escape = version !== '1.0';
  const destination = t.kind === 'topic' ? topicDestinationLine(t.topic, escape) : valueLine('destination:', t.kind === 'queue' ? '/queue/' + t.name : sub.destination, escape);
  let head = 'MESSAGE\n' + subscriptionLine(sub.id, escape) + valueLine('message-id:', msg.id, escape) + destination;
  if (version === '1.2' && sub.ackMode !== 'auto') head += valueLine('ack:', `${msg.id}:${sub.id}`, escape);
  if (redelivered) head += 'redelivered:true\n';
  if (msg.contentType) head += valueLine('content-type:', msg.contentType, escape);
  const { body, base64 } = bodyFor(msg, version, framing);
  if (base64) head += 'content-transfer-encoding:base64\n';
  if (msg.replyTo) head += valueLine('reply-to:', msg.replyTo, escape);
  if (msg.correlation) head += valueLine('correlation-id:', msg.correlation.toString(isUtf8(msg.correlation) ? 'utf8' : 'base64'), escape);
  // The message's own headers come from whoever published it (MQTT 5 user properties, HTTP publish):
  // none may take the place of a header this frame owns or already has, whatever its spacing.
  for (const h of msg.headers) {
    const name = h[0].trim();
    if (RESERVED.has(name) || (name === 'reply-to' && msg.replyTo) || (name === 'correlation-id' && msg.correlation)) continue;
    head += headerLine(h[0], h[1], escape);
  }
  return frameBytes(head, body, wsText);
}
