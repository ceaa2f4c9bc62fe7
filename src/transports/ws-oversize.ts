/**
 * Messages over a WebSocket route's size limit, seen before `ws` refuses
 * them, so the protocol can tell its client why in its own words before the
 * 1009 close (STOMP sends an ERROR frame, as it does on TCP).
 */
import type { Socket } from 'node:net';

/**
 * Watches, at the socket, the WebSocket frames a client sends for a message
 * larger than `limit`. `ws` refuses such a message by closing with 1009
 * before any of it reaches the protocol, so what the client is owed (STOMP:
 * an ERROR frame) must be written first, from here (this listener runs before ws's).
 * Only frame headers are read (2 to 14 bytes a frame); payloads are skipped
 * by count, so the cost is linear and nothing is buffered.
 *
 * `onBurst` is called, before `ws` reads the chunk, for a chunk that holds
 * two or more whole data frames (a client's burst of messages).
 */
export function watchMessageSize(socket: Socket, limit: number, onOversize: (bytes: number) => void, onBurst?: () => void): void {
  // The frame header is read into numbers (no buffer per connection): its first two bytes, and the
  // extended payload length (2 or 8 bytes, big-endian) as it arrives; a mask key is skipped.
  let b0 = 0;
  let b1 = 0;
  let extended = 0;
  let have = 0;
  let need = 2;
  let skip = 0;
  /** Payload bytes of the data message being received, over its fragments. */
  let total = 0;
  const onData = (chunk: Buffer): void => {
    let i = 0;
    /** Messages whose last frame is wholly in this chunk: two make it a burst (see onBurst). */
    let whole = 0;
    while (i < chunk.length) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
        continue;
      }
      const byte = chunk[i++]!;
      if (have === 0) b0 = byte;
      else if (have === 1) {
        b1 = byte;
        const len7 = b1 & 0x7f;
        need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
        extended = 0;
      } else if (have < 2 + ((b1 & 0x7f) === 126 ? 2 : (b1 & 0x7f) === 127 ? 8 : 0)) extended = extended * 256 + byte;
      have++;
      if (have < need) continue;
      const len7 = b1 & 0x7f;
      const length = len7 >= 126 ? extended : len7;
      const opcode = b0 & 0x0f;
      have = 0;
      need = 2;
      skip = length;
      if (opcode >= 0x08) continue; // control frames are not part of a message
      total += length;
      if (total > limit) {
        socket.off('data', onData);
        onOversize(total);
        return;
      }
      if (b0 & 0x80) {
        total = 0; // FIN: the message is complete
        if (onBurst && skip <= chunk.length - i && ++whole === 2) onBurst();
      }
    }
  };
  socket.prependListener('data', onData);
  socket.on('close', () => socket.off('data', onData)); // a socket closes once: no need for `once`'s wrapper
}
