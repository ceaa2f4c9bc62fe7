/**
 * Server-to-client WebSocket frames (RFC 6455 §5.2) built once and written to
 * many sockets. Server frames are never masked, so the bytes of one message
 * are the same for every subscriber: a fan-out can share one buffer instead
 * of framing per socket.
 */
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { writeBatched } from './write-batch.js';

/** One final frame (FIN set) with opcode 1 (text) or 2 (binary). */
export function wsFrame(payload: Buffer, text: boolean): Buffer {
  const len = payload.length;
  const headLen = wsHeadLength(len);
  const out = Buffer.allocUnsafe(headLen + len);
  writeWsHead(out, len, text);
  payload.copy(out, headLen);
  return out;
}

/** Bytes of the header of a server frame whose payload has `len` bytes. */
export function wsHeadLength(len: number): number {
  return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

/** Writes, at the start of `out`, the header of one final unmasked frame with a payload of `len` bytes. */
export function writeWsHead(out: Buffer, len: number, text: boolean): void {
  out[0] = 0x80 | (text ? 0x1 : 0x2);
  if (len < 126) {
    out[1] = len;
  } else if (len < 65536) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
}

/**
 * The socket under a `ws` WebSocket. `ws` keeps it in `_socket`; writing to it
 * directly is safe because Herald turns permessage-deflate off, so `ws` never
 * holds frames back in a queue of its own that our writes could overtake.
 */
export function rawSocket(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

/** Writes a prepared frame if the WebSocket is still open. */
export function writeFrame(ws: WebSocket, frame: Buffer): void {
  if (ws.readyState === WebSocket.OPEN) writeBatched(rawSocket(ws), frame);
}
