/**
 * A WebSocket's incoming messages, metered: at most TURN_MESSAGES or
 * TURN_BYTES per event-loop iteration (read-budget.ts), and at most
 * `wsMessagesPerSecond` per second. Used for every WebSocket path.
 */
import { WebSocket } from 'ws';
import { loopTurn, turnNow } from '../clock.js';
import { TURN_BYTES, TURN_MESSAGES } from './read-budget.js';

function sizeOf(data: unknown): number {
  if (Buffer.isBuffer(data)) return data.length;
  if (Array.isArray(data)) return data.reduce((n: number, b: Buffer) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : 0;
}

/**
 * A WebSocket whose incoming messages are metered: past the iteration's
 * budget or the second's cap, further messages (those already read from the
 * socket) wait in order and the socket is not read until the next iteration
 * (budget) or the next second (cap). ws reads a whole socket chunk at once,
 * so pausing alone would still let one chunk (thousands of tiny messages)
 * through; holding them here makes both limits exact, and the pause bounds
 * what is held to about one chunk. It bounds what a flood of tiny messages
 * can cost before any parser sees them (each message has a fixed cost
 * whatever its size). The protocol's own pause/resume (publish rate,
 * inbound backlog) is honoured alongside, and exactly: no message is
 * delivered while it is paused, not even one already read.
 *
 * `perSecond` 0: no per-second cap, the iteration budget only.
 */
export function meteredWebSocket(perSecond: number): typeof WebSocket {
  return class MeteredWebSocket extends WebSocket {
    private windowStart = 0;
    private count = 0;
    private turn = -1;
    private turnMessages = 0;
    private turnBytes = 0;
    /** Messages read but not yet delivered, in order, from `next` on. */
    private held: (unknown[] | undefined)[] | undefined;
    private next = 0;
    /** Set while a limit holds messages back: until the next iteration, or the next second. */
    private waiting = false;
    private pausedByApp = false;

    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event === 'close') this.flush(); // what the client sent before it left is handled before its close
      if (event !== 'message') return super.emit(event, ...args);
      if (this.readyState !== WebSocket.OPEN && !this.held) return super.emit('message', ...args); // closing: no limits
      if (this.held || this.pausedByApp) (this.held ??= []).push(args);
      else if (this.mayDeliver(args[0])) super.emit('message', ...args);
      else this.held = [args];
      return true;
    }

    /** Counts a message against both limits, or starts a wait and says no. */
    private mayDeliver(data: unknown): boolean {
      const turn = loopTurn();
      if (turn !== this.turn) {
        this.turn = turn;
        this.turnMessages = 0;
        this.turnBytes = 0;
      }
      if (this.turnMessages >= TURN_MESSAGES || this.turnBytes >= TURN_BYTES) {
        this.wait(0);
        return false;
      }
      if (perSecond > 0) {
        const now = turnNow();
        if (now - this.windowStart >= 1000) {
          this.windowStart = now;
          this.count = 0;
        }
        if (this.count >= perSecond) {
          this.wait(1000 - (now - this.windowStart));
          return false;
        }
        this.count++;
      }
      this.turnMessages++;
      this.turnBytes += sizeOf(data);
      return true;
    }

    private wait(ms: number): void {
      this.waiting = true;
      super.pause();
      if (ms === 0) setImmediate(() => this.release());
      else setTimeout(() => this.release(), ms).unref();
    }

    /**
     * Once the connection is closing (either side), what is held is handed
     * over at once, in order, limits aside: messages the client sent before
     * its close frame (a DISCONNECT, say) still count, and the protocol
     * ignores them itself if it is the one that closed. Reading resumes so
     * the close handshake can complete.
     */
    private flush(): void {
      const held = this.held;
      this.held = undefined;
      for (let i = this.next; held && i < held.length; i++) super.emit('message', ...held[i]!);
      this.next = 0;
      super.resume();
    }

    private release(): void {
      this.waiting = false;
      if (this.readyState !== WebSocket.OPEN) return this.flush();
      const held = this.held;
      if (held) {
        while (this.next < held.length) {
          if (this.readyState !== WebSocket.OPEN) return this.flush();
          if (this.pausedByApp) return; // resume() hands over the rest
          if (!this.mayDeliver(held[this.next]![0])) return; // a new wait: the rest stays held
          const args = held[this.next]!;
          held[this.next++] = undefined;
          super.emit('message', ...args);
        }
        this.held = undefined;
        this.next = 0;
      }
      if (!this.pausedByApp) super.resume();
    }

    override pause(): void {
      this.pausedByApp = true;
      super.pause();
    }

    override resume(): void {
      this.pausedByApp = false;
      if (this.readyState !== WebSocket.OPEN) return this.flush();
      if (this.waiting) return;
      if (this.held) {
        // Handed over from the next iteration, not from inside whatever called resume.
        this.waiting = true;
        setImmediate(() => this.release());
      } else super.resume();
    }
  };
}
