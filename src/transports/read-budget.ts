/**
 * Fair reading: how much one connection may read in one event-loop
 * iteration before it yields to the others. libuv reads a busy socket up to
 * 32 times (64 KiB each) before it looks at another, so without this a
 * client flooding tiny packets (PINGREQs, one-byte WebSocket messages,
 * empty SENDs) holds every other client's round trip for the time its 2 MiB
 * take to handle. Shared by every listener: TCP reads yield after
 * TURN_BYTES, WebSocket reads after TURN_BYTES or TURN_MESSAGES (a
 * WebSocket message has a fixed cost whatever its size).
 */
import type { Socket } from 'node:net';
import { loopTurn } from '../clock.js';

export const TURN_BYTES = 64 * 1024;
export const TURN_MESSAGES = 1000;

/**
 * A TCP socket's reading, stopped by its protocol (pause/resume: publish
 * rate, backlog) or for the rest of an iteration once it has read
 * TURN_BYTES; it reads again when neither holds it.
 */
export class FairReader {
  private pausedByApp = false;
  private yielding = false;
  private turn = -1;
  private turnBytes = 0;

  constructor(private readonly socket: Socket) {}

  /** Hands each chunk to `onData`, then counts it against this iteration's budget. */
  read(onData: (chunk: Buffer) => void): void {
    this.socket.on('data', (chunk: Buffer) => {
      onData(chunk);
      this.count(chunk.length);
    });
  }

  private count(bytes: number): void {
    const turn = loopTurn();
    if (turn !== this.turn) {
      this.turn = turn;
      this.turnBytes = 0;
    }
    this.turnBytes += bytes;
    if (this.turnBytes < TURN_BYTES || this.yielding) return;
    // Node stops reading once a chunk is buffered behind the pause: at most one more chunk waits.
    this.yielding = true;
    this.socket.pause();
    setImmediate(() => {
      this.yielding = false;
      if (!this.pausedByApp && !this.socket.destroyed) this.socket.resume();
    });
  }

  pause(): void {
    this.pausedByApp = true;
    this.socket.pause();
  }

  resume(): void {
    this.pausedByApp = false;
    if (!this.yielding) this.socket.resume();
  }
}
