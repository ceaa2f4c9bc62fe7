/**
 * A CoreMessage on the bus: encoded once per publish, whatever the number of
 * nodes. Layout: [header length u32][header JSON][body bytes]. The header
 * holds everything but the body; binary correlation data goes as base64.
 */
import { createMessage, type CoreMessage, type Target } from '../core/message.js';

interface Header {
  i: string;
  t: Target;
  c?: string;
  h?: [string, string][];
  q: 0 | 1 | 2;
  e?: number;
  r?: string;
  k?: string;
  R?: 1;
  f?: 0 | 1;
  d?: string;
  a?: string[];
  p?: string;
  s: number;
}

export function encodeMessage(msg: CoreMessage): Buffer {
  const h: Header = { i: msg.id, t: msg.target, q: msg.qos, s: msg.timestamp };
  if (msg.contentType !== undefined) h.c = msg.contentType;
  if (msg.headers.length) h.h = msg.headers;
  if (msg.expiresAt !== undefined) h.e = msg.expiresAt;
  if (msg.replyTo !== undefined) h.r = msg.replyTo;
  if (msg.correlation !== undefined) h.k = msg.correlation.toString('base64');
  if (msg.retain) h.R = 1;
  if (msg.payloadFormat !== undefined) h.f = msg.payloadFormat;
  if (msg.recordId !== undefined) h.d = msg.recordId;
  if (msg.audience !== undefined) h.a = [...msg.audience];
  if (msg.publisherSession !== undefined) h.p = msg.publisherSession;
  const json = Buffer.from(JSON.stringify(h));
  const out = Buffer.allocUnsafe(4 + json.length + msg.body.length);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, 4);
  msg.body.copy(out, 4 + json.length);
  return out;
}

/** The message, or undefined for a malformed frame (never thrown: one bad frame must not stop the bus). */
export function decodeMessage(data: Buffer): CoreMessage | undefined {
  if (data.length < 4) return undefined;
  const n = data.readUInt32BE(0);
  if (4 + n > data.length) return undefined;
  let h: Header;
  try {
    h = JSON.parse(data.toString('utf8', 4, 4 + n)) as Header;
  } catch {
    return undefined;
  }
  if (typeof h !== 'object' || h === null || typeof h.i !== 'string' || typeof h.t !== 'object') return undefined;
  return createMessage({
    id: h.i,
    target: h.t,
    // A copy: the frame buffer is not ours to keep.
    body: Buffer.from(data.subarray(4 + n)),
    contentType: h.c,
    headers: h.h ?? [],
    qos: h.q,
    expiresAt: h.e,
    replyTo: h.r,
    correlation: h.k !== undefined ? Buffer.from(h.k, 'base64') : undefined,
    retain: h.R === 1,
    payloadFormat: h.f,
    recordId: h.d,
    audience: h.a !== undefined ? new Set(h.a) : undefined,
    publisherSession: h.p,
    timestamp: h.s,
  });
}
