/**
 * One connection's byte stream, whether it runs over TCP or a WebSocket:
 * what a protocol needs to write (batched per event-loop turn), to see its
 * backlog, to stop and restart reading, and to close with a code and reason.
 * A protocol's connection is written once against this and runs on both.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { WebSocket } from 'ws';
import type { WireFigures } from '../core/session.js';
import { rawSocket, wsFrame, writeFrame } from './ws-frame.js';
import { writeBatched } from './write-batch.js';

/** How long a closing connection may take to flush before it is dropped. */
const CLOSE_GRACE_MS = 2000;

export interface ByteTransport {
  /** Names the wire framing, so prepared frames can be cached per framing on a shared message. */
  readonly framing: 'ws' | 'tcp';
  /** Wraps a protocol frame in the transport's framing (a WebSocket text or binary frame; nothing for TCP). */
  prepare(payload: Buffer, text: boolean): Buffer;
  /** Writes a prepared frame, batched with the other writes of this event-loop turn. */
  write(prepared: Buffer): void;
  /** Bytes written but not yet taken by the network. */
  buffered(): number;
  /** Flushes, then closes (WebSocket: the close handshake with code and reason; TCP: FIN), dropping the connection if that takes too long. */
  close(code: number, reason: string): void;
  /** Stops reading from the client until `resume`. */
  pause(): void;
  resume(): void;
  /** Bytes read and written on the socket so far (its own counters: nothing is counted per message), and whether it is TLS. */
  wire(): WireFigures;
}

/** A socket's own byte counters (a TLS socket counts what it decrypted and encrypted). */
export function wireOf(socket: Socket | undefined): WireFigures {
  return { bytesIn: socket?.bytesRead ?? 0, bytesOut: socket?.bytesWritten ?? 0, tls: socket instanceof TLSSocket };
}

export function webSocketTransport(ws: WebSocket): ByteTransport {
  const socket = rawSocket(ws);
  return {
    framing: 'ws',
    prepare: wsFrame,
    write: (frame) => writeFrame(ws, frame),
    buffered: () => socket.writableLength,
    close(code, reason) {
      // A close reason may hold at most 123 bytes.
      ws.close(code, reason.slice(0, 120));
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    wire: () => wireOf(socket),
  };
}

export function tcpTransport(socket: Socket): ByteTransport {
  return {
    framing: 'tcp',
    prepare: (frame) => frame,
    write: (frame) => writeBatched(socket, frame),
    buffered: () => socket.writableLength,
    close() {
      socket.end();
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    wire: () => wireOf(socket),
  };
}
