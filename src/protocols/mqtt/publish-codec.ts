/**
 * PUBLISH, the one packet on the hot path, read and written here rather
 * than by mqtt-packet: a whole packet (the framer's) is decoded with a few
 * reads and no stream state, and an outgoing one is written into a single
 * buffer of its exact size. Everything else, and a v5 PUBLISH that carries
 * properties, stays with mqtt-packet, which reads and writes them in full.
 *
 * The decoder refuses what mqtt-packet refuses, with the same words: both
 * QoS bits set, a topic or packet id cut short.
 */
import type { IPublishPacket } from 'mqtt-packet';

/** A PUBLISH this decoder cannot read: the stream is malformed. */
export class PublishDecodeError extends Error {
  override name = 'PublishDecodeError';
}

/** Whether `packet` (a whole packet, fixed header first) is a PUBLISH. */
export function isPublish(packet: Buffer, at: number): boolean {
  return packet[at]! >> 4 === 3;
}

/**
 * Decodes the whole PUBLISH in `buf[start, end)`. Returns undefined for a
 * v5 PUBLISH with properties (mqtt-packet reads those); throws
 * PublishDecodeError when it is malformed. `payload` keeps at most twice its bytes alive (ownPayload).
 */
export function decodePublish(buf: Buffer, start: number, end: number, version: number): IPublishPacket | undefined {
  const first = buf[start]!;
  const qos = (first >> 1) & 3;
  if (qos === 3) throw new PublishDecodeError('Packet must not have both QoS bits set to 1');
  // The Remaining Length (the framer has checked it: at most four bytes, and the packet is whole).
  let off = start + 1;
  while (buf[off++]! & 0x80);
  const length = end - off;
  if (off + 2 > end) throw new PublishDecodeError('Cannot parse topic');
  const topicLength = (buf[off]! << 8) | buf[off + 1]!;
  off += 2;
  if (off + topicLength > end) throw new PublishDecodeError('Cannot parse topic');
  const topic = buf.toString('utf8', off, off + topicLength);
  off += topicLength;
  let messageId: number | undefined;
  if (qos > 0) {
    if (off + 2 > end) throw new PublishDecodeError('Cannot parse messageId');
    messageId = (buf[off]! << 8) | buf[off + 1]!;
    off += 2;
  }
  if (version === 5) {
    // Property Length 0 is one byte; anything else is left to mqtt-packet.
    if (off >= end || buf[off] !== 0) return undefined;
    off += 1;
  }
  return {
    cmd: 'publish',
    retain: (first & 1) === 1,
    qos: qos as 0 | 1 | 2,
    dup: (first & 8) === 8,
    length,
    topic,
    payload: ownPayload(buf, off, end),
    messageId,
  };
}

const EMPTY = Buffer.alloc(0);

/**
 * The payload read from `buf[start, end)`, as a buffer that keeps no more
 * than twice its own bytes alive. A view of a small payload would keep the
 * whole chunk it came in alive (64 KiB from a socket, or a WebSocket
 * message) for as long as the message lives (retained, held for a slow
 * subscriber, in a session's queue), while every limit counts only the
 * payload's own bytes: it is copied (small copies come from Node's shared
 * pool). A payload that is most of its memory (a large packet the framer
 * put together, or one that filled its read) is kept as a view: copying it
 * would only double what a flood of large messages allocates.
 */
export function ownPayload(buf: Buffer, start = 0, end = buf.length): Buffer {
  if (end <= start) return EMPTY;
  if ((end - start) * 2 >= buf.buffer.byteLength) return buf.subarray(start, end);
  const out = Buffer.allocUnsafe(end - start);
  buf.copy(out, 0, start, end);
  return out;
}

/**
 * Encodes a PUBLISH without properties (3.1, 3.1.1, or 5.0 with an empty
 * property list) into one buffer of its exact size.
 */
export function encodePublish(topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean, dup: boolean, messageId: number | undefined, version: number): Buffer {
  const topicBytes = Buffer.byteLength(topic);
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + payload.length;
  const lengthBytes = remaining < 0x80 ? 1 : remaining < 0x4000 ? 2 : remaining < 0x200000 ? 3 : 4;
  const out = Buffer.allocUnsafe(1 + lengthBytes + remaining);
  out[0] = 0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
  let off = 1;
  let n = remaining;
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 0x80);
    if (n > 0) b |= 0x80;
    out[off++] = b;
  } while (n > 0);
  out[off++] = topicBytes >> 8;
  out[off++] = topicBytes & 0xff;
  off += out.write(topic, off, topicBytes, topicBytes === topic.length ? 'latin1' : 'utf8');
  if (qos > 0) {
    out[off++] = messageId! >> 8;
    out[off++] = messageId! & 0xff;
  }
  if (version === 5) out[off++] = 0;
  payload.copy(out, off);
  return out;
}
