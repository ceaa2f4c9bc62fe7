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
import { FairReader } from './read-budget.js';
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

/**
 * The transports are classes (methods on the prototype) rather than objects
 * of closures: a connection holds one small object, not eight closures and
 * their context.
 */
class WebSocketTransport implements ByteTransport {
  readonly framing = 'ws';
  private readonly socket: Socket;

  constructor(private readonly ws: WebSocket) {
    this.socket = rawSocket(ws);
  }
  prepare(payload: Buffer, text: boolean): Buffer {
    return wsFrame(payload, text);
  }
  write(frame: Buffer): void {
    writeFrame(this.ws, frame);
  }
  buffered(): number {
    return this.socket.writableLength;
  }
  close(code: number, reason: string): void {
    const ws = this.ws;
    // A close reason may hold at most 123 bytes.
    ws.close(code, reason.slice(0, 120));
    ws.resume(); // paused for any reason, it would not read the client's close frame and wait out the grace
    setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
  }
  pause(): void {
    this.ws.pause();
  }
  resume(): void {
    this.ws.resume();
  }
  wire(): WireFigures {
    return wireOf(this.socket);
  }
}

/** A TCP (or TLS) connection's transport; its protocol reads through `read`, fairly (see read-budget.ts). */
export interface TcpByteTransport extends ByteTransport {
  read(onData: (chunk: Buffer) => void): void;
}

class TcpTransport implements TcpByteTransport {
  readonly framing = 'tcp';
  private readonly reader: FairReader;

  constructor(private readonly socket: Socket) {
    this.reader = new FairReader(socket);
  }
  read(onData: (chunk: Buffer) => void): void {
    this.reader.read(onData);
  }
  prepare(frame: Buffer): Buffer {
    return frame;
  }
  write(frame: Buffer): void {
    writeBatched(this.socket, frame);
  }
  buffered(): number {
    return this.socket.writableLength;
  }
  close(): void {
    const socket = this.socket;
    socket.end();
    this.reader.resume(); // to see the client's FIN (what it still sends is not handled: the protocol has closed)
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
  }
  pause(): void {
    this.reader.pause();
  }
  resume(): void {
    this.reader.resume();
  }
  wire(): WireFigures {
    return wireOf(this.socket);
  }
}

export function webSocketTransport(ws: WebSocket): ByteTransport {
  return new WebSocketTransport(ws);
}

export function tcpTransport(socket: Socket): TcpByteTransport {
  return new TcpTransport(socket);
}
