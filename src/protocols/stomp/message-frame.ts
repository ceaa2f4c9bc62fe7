/**
 * What a STOMP frame may carry of a message, both ways: the headers the
 * protocol owns (never taken from a SEND into a message, nor from a message
 * into a MESSAGE), and the MESSAGE frame a subscription receives.
 */
import { isUtf8 } from 'node:buffer';
import { topicToDotted } from '../../core/destination.js';
import type { CoreMessage, HeaderList } from '../../core/message.js';
import { encodeFrame, type StompFrame } from './codec.js';

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
  const seen = new Set<string>();
  for (const [k, v] of frame.headers) {
    const name = k.trim();
    if (RESERVED.has(name) || seen.has(name) || k.includes('\0') || v.includes('\0')) continue;
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

export function encodeMessageFrame(sub: MessageFrameSubscription, msg: CoreMessage, redelivered: boolean, version: Version, framing: string): Buffer {
  const t = msg.target;
  const destination = t.kind === 'topic' ? '/topic/' + topicToDotted(t.topic) : t.kind === 'queue' ? '/queue/' + t.name : sub.destination;
  const headers: HeaderList = [
    ['subscription', sub.id],
    ['message-id', msg.id],
    ['destination', destination],
  ];
  if (version === '1.2' && sub.ackMode !== 'auto') headers.push(['ack', `${msg.id}:${sub.id}`]);
  if (redelivered) headers.push(['redelivered', 'true']);
  if (msg.contentType) headers.push(['content-type', msg.contentType]);
  const { body, base64 } = bodyFor(msg, version, framing);
  if (base64) headers.push(['content-transfer-encoding', 'base64']);
  if (msg.replyTo) headers.push(['reply-to', msg.replyTo]);
  if (msg.correlation) headers.push(['correlation-id', msg.correlation.toString(isUtf8(msg.correlation) ? 'utf8' : 'base64')]);
  // The message's own headers come from whoever published it (MQTT 5 user properties, HTTP publish):
  // none may take the place of a header this frame owns or already has, whatever its spacing.
  const own = new Set<string>(headers.map(([k]) => k));
  for (const h of msg.headers) {
    const name = h[0].trim();
    if (!RESERVED.has(name) && !own.has(name)) headers.push(h);
  }
  return encodeFrame('MESSAGE', headers, body, version !== '1.0');
}
