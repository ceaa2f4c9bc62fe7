/**
 * The oversized-message watcher, fed client frames (masked, as clients send
 * them) on a fake socket, in chunks of any size: it names a message over the
 * limit once, counts a message's fragments together, and ignores control
 * frames.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { watchMessageSize } from '../../src/transports/ws-oversize.js';

/** A client frame: FIN, opcode, mask bit and key, and the payload length in the shortest encoding. */
function clientFrame(opcode: number, length: number, fin = true): Buffer {
  const ext = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + 4);
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (ext === 0) head[1] = 0x80 | length;
  else if (ext === 2) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(length, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    head.writeUInt32BE(length >>> 0, 6);
  }
  return Buffer.concat([head, Buffer.alloc(length, 0x5a)]);
}

/** Feeds `bytes` to a watched fake socket in chunks of `chunk` bytes; returns what the watcher reported. */
function watch(bytes: Buffer, limit: number, chunk = bytes.length): number[] {
  const socket = new EventEmitter() as unknown as Socket;
  const seen: number[] = [];
  watchMessageSize(socket, limit, (n) => seen.push(n));
  for (let i = 0; i < bytes.length; i += chunk) socket.emit('data', bytes.subarray(i, i + chunk));
  return seen;
}

describe('watchMessageSize', () => {
  it('stays quiet for messages within the limit, whatever their length encoding', () => {
    const frames = Buffer.concat([clientFrame(1, 0), clientFrame(1, 125), clientFrame(2, 126), clientFrame(1, 1000)]);
    assert.deepEqual(watch(frames, 1000), []);
    assert.deepEqual(watch(frames, 1000, 1), []);
  });

  it('reports a message over the limit once, from its header, before its payload arrives', () => {
    const big = clientFrame(1, 70_000);
    assert.deepEqual(watch(big.subarray(0, 14), 65_536), [70_000]);
    assert.deepEqual(watch(Buffer.concat([big, clientFrame(1, 80_000)]), 65_536, 7), [70_000]);
  });

  it('adds up the fragments of one message, and starts again after its final fragment', () => {
    const parts = Buffer.concat([clientFrame(1, 600, false), clientFrame(0, 600, true)]);
    assert.deepEqual(watch(parts, 1000, 3), [1200]);
    const two = Buffer.concat([clientFrame(1, 600), clientFrame(1, 600)]);
    assert.deepEqual(watch(two, 1000), []);
  });

  it('does not count control frames between fragments', () => {
    const frames = Buffer.concat([clientFrame(1, 500, false), clientFrame(9, 100), clientFrame(0, 400, true)]);
    assert.deepEqual(watch(frames, 1000), []);
  });

  it('stops watching when the socket closes', () => {
    const socket = new EventEmitter() as unknown as Socket;
    const seen: number[] = [];
    watchMessageSize(socket, 10, (n) => seen.push(n));
    socket.emit('close');
    socket.emit('data', clientFrame(1, 100));
    assert.deepEqual(seen, []);
    assert.equal(socket.listenerCount('data'), 0);
  });

  it('calls onBurst once for a chunk holding two or more whole messages, before anything else reads it, and never for one', () => {
    const bursts = (bytes: Buffer, chunk = bytes.length): number => {
      const socket = new EventEmitter() as unknown as Socket;
      let n = 0;
      watchMessageSize(socket, 100_000, () => assert.fail('no message is over the limit'), () => n++);
      for (let i = 0; i < bytes.length; i += chunk) socket.emit('data', bytes.subarray(i, i + chunk));
      return n;
    };
    const one = clientFrame(1, 50);
    assert.equal(bursts(one), 0);
    assert.equal(bursts(Buffer.concat([one, one])), 1);
    assert.equal(bursts(Buffer.concat([one, one, one, one])), 1, 'once per chunk');
    assert.equal(bursts(Buffer.concat([one, one, one, one]), one.length * 2), 2, 'once for each chunk that holds two');
    assert.equal(bursts(Buffer.concat([one, one.subarray(0, 10)])), 0, 'a message not yet whole does not count');
    assert.equal(bursts(Buffer.concat([clientFrame(1, 50, false), clientFrame(0, 50, true)])), 0, 'two fragments are one message');
    assert.equal(bursts(Buffer.concat([one, clientFrame(9, 5)])), 0, 'a ping is not a message');
  });
});
