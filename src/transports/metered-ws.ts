/** WebSocket messages per second (`wsMessagesPerSecond`), capped for every WebSocket path. */
import { WebSocket } from 'ws';
import { turnNow } from '../clock.js';

/**
 * A WebSocket whose incoming messages are capped per second: past the cap,
 * further messages (those already read from the socket) wait in order and
 * the socket is not read until the second is over. ws reads a whole socket
 * chunk at once, so pausing alone would still let one chunk (thousands of
 * tiny messages) through; holding them here makes the cap exact, and the
 * pause bounds what is held to one chunk. It bounds what a flood of tiny
 * messages can cost before any parser sees them (each message has a fixed
 * cost whatever its size). The protocol's own pause/resume (publish rate,
 * inbound backlog) is honoured alongside.
 */
export function meteredWebSocket(perSecond: number): typeof WebSocket {
  return class MeteredWebSocket extends WebSocket {
    private windowStart = 0;
    private count = 0;
    private waiting: unknown[][] | undefined;
    private pausedByApp = false;
    private pausedByCap = false;

    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event !== 'message') return super.emit(event, ...args);
      if (this.waiting) {
        this.waiting.push(args);
        return true;
      }
      const now = turnNow();
      if (now - this.windowStart >= 1000) {
        this.windowStart = now;
        this.count = 0;
      }
      if (++this.count <= perSecond) return super.emit('message', ...args);
      this.waiting = [args];
      this.pausedByCap = true;
      super.pause();
      setTimeout(() => this.release(), 1000 - (now - this.windowStart)).unref();
      return true;
    }

    private release(): void {
      const held = this.waiting ?? [];
      this.waiting = undefined;
      this.windowStart = Date.now();
      this.count = 0;
      if (this.readyState !== WebSocket.OPEN) return;
      // Over the cap again part-way: the rest joins the new wait, in order.
      for (const args of held) this.emit('message', ...args);
      if (this.waiting) return;
      this.pausedByCap = false;
      if (!this.pausedByApp) super.resume();
    }

    override pause(): void {
      this.pausedByApp = true;
      super.pause();
    }

    override resume(): void {
      this.pausedByApp = false;
      if (!this.pausedByCap) super.resume();
    }
  };
}
