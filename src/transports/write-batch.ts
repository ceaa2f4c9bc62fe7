/**
 * Socket writes that coalesce bursts. The first write to a socket in an
 * event-loop turn goes straight out (no added latency for sparse traffic);
 * a second write to the same socket in that turn corks it, and every corked
 * socket is uncorked once the turn's I/O is done, so a burst of N messages
 * to one client costs one writev system call instead of N writes.
 *
 * On small virtual machines a send() costs several microseconds, more than
 * everything else a delivery does, so this is the main lever on CPU per
 * message at high rates.
 */
import type { Socket } from 'node:net';

const writtenThisTurn = new Set<Socket>();
const corked: Socket[] = [];
let flushScheduled = false;
/** While set, even a socket's first write of the turn waits for the flush (see holdWrites). */
let holding = false;

/**
 * An incoming chunk holds several messages (a client's burst): until the
 * code handling it returns (and its microtasks ran), a socket's first write
 * of the turn is held for the flush too, so that a subscriber getting
 * several of them costs one system call, not a write and then a writev.
 * The flush comes at the end of the same event-loop turn.
 */
export function holdWrites(): void {
  if (holding) return;
  holding = true;
  queueMicrotask(release);
}

function release(): void {
  holding = false;
}

function flush(): void {
  flushScheduled = false;
  holding = false;
  writtenThisTurn.clear();
  for (const s of corked) if (!s.destroyed) s.uncork();
  corked.length = 0;
}

export function writeBatched(socket: Socket, data: Buffer): void {
  if (holding || writtenThisTurn.has(socket)) {
    if (socket.writableCorked === 0) {
      socket.cork();
      corked.push(socket);
    }
  } else {
    writtenThisTurn.add(socket);
  }
  socket.write(data);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}
