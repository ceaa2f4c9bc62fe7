/**
 * The STOMP parser's cost is linear in the bytes fed, however they are cut:
 * a frame split into one-byte WebSocket messages once cost quadratic CPU
 * (the pending buffer was concatenated and rescanned on every chunk), so one
 * unauthenticated client could freeze the event loop (issue 13, item 1).
 *
 * The parser counts the bytes it examines or copies (`work`); these tests
 * hold that count to a small multiple of the bytes fed, which is exact and
 * does not depend on the machine's speed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StompParser, type StompFrame } from '../../src/protocols/stomp/codec.js';

const LIMITS = { maxHeaderBytes: 16 * 1024, maxHeaders: 64, maxBodyBytes: 4 * 1024 * 1024 };

/** Feeds `bytes` in chunks of `size`; returns the frames and the parser's work per byte fed. */
function feedInPieces(bytes: Buffer, size: number): { frames: StompFrame[]; perByte: number; parser: StompParser } {
  const parser = new StompParser(LIMITS);
  const frames: StompFrame[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    parser.feed(bytes.subarray(i, i + size), (e) => {
      if (e.type === 'frame') frames.push(e.frame);
    });
  }
  return { frames, perByte: parser.work / bytes.length, parser };
}

function sendFrame(bodyBytes: number, withLength: boolean, extraHeaders = ''): { bytes: Buffer; body: Buffer } {
  // A deterministic body without NULs: the frame ends at the first NUL when there is no content-length.
  const body = Buffer.alloc(bodyBytes);
  for (let i = 0; i < bodyBytes; i++) body[i] = 0x20 + ((i * 31) % 95);
  const head = `SEND\ndestination:/topic/linear\n${extraHeaders}${withLength ? `content-length:${bodyBytes}\n` : ''}\n`;
  return { bytes: Buffer.concat([Buffer.from(head), body, Buffer.from([0])]), body };
}

describe('STOMP parser: linear in the bytes fed', () => {
  for (const withLength of [false, true]) {
    it(`a 200 KB body fed one byte at a time costs a few units of work per byte (${withLength ? 'with' : 'without'} content-length)`, () => {
      const { bytes, body } = sendFrame(200_000, withLength);
      const one = feedInPieces(bytes, 1);
      assert.equal(one.frames.length, 1);
      assert.deepEqual(one.frames[0]!.body, body);
      assert.equal(one.parser.buffered, 0);
      // Quadratic work would be ~100,000 units per byte here; linear work is a small constant.
      assert.ok(one.perByte <= 6, `work per byte fed one at a time: ${one.perByte.toFixed(2)}`);
      // The same frame in one chunk is parsed in place: about two units per byte (search and copy of the body).
      const whole = feedInPieces(bytes, bytes.length);
      assert.ok(whole.perByte <= 2.5, `work per byte in one chunk: ${whole.perByte.toFixed(2)}`);
    });
  }

  it('four times the bytes is four times the work, not sixteen', () => {
    const small = feedInPieces(sendFrame(100_000, false).bytes, 1);
    const large = feedInPieces(sendFrame(400_000, false).bytes, 1);
    const ratio = large.parser.work / small.parser.work;
    assert.ok(ratio > 3.5 && ratio < 4.5, `work ratio for 4x the bytes: ${ratio.toFixed(2)}`);
  });

  it('a header block fed one byte at a time is scanned once', () => {
    const headers = Array.from({ length: 60 }, (_, i) => `x-h${i}:${'v'.repeat(200)}\n`).join('');
    const { bytes } = sendFrame(10, true, headers);
    const r = feedInPieces(bytes, 1);
    assert.equal(r.frames.length, 1);
    assert.equal(r.frames[0]!.headers.length, 62);
    assert.ok(r.perByte <= 6, `work per byte: ${r.perByte.toFixed(2)}`);
  });

  it('many frames and heart-beats cut at odd places cost the same per byte as whole ones', () => {
    const one = Buffer.concat([sendFrame(3000, false).bytes, Buffer.from('\n\r\n'), sendFrame(5000, true).bytes]);
    const stream = Buffer.concat(Array.from({ length: 50 }, () => one));
    for (const size of [1, 7, 1000, 4093]) {
      const r = feedInPieces(stream, size);
      assert.equal(r.frames.length, 100, `chunks of ${size}`);
      assert.ok(r.perByte <= 6, `chunks of ${size}: work per byte ${r.perByte.toFixed(2)}`);
    }
  });

  it('a 1 MiB frame fed one byte at a time is parsed in seconds at most, not hours', () => {
    const { bytes } = sendFrame(1024 * 1024, false);
    const t0 = process.cpuUsage();
    const r = feedInPieces(bytes, 1);
    const used = process.cpuUsage(t0);
    const ms = (used.user + used.system) / 1000;
    assert.equal(r.frames.length, 1);
    // Linear: about 0.2 s on a small VM; the old quadratic parser needed hours for this.
    assert.ok(ms < 5000, `${ms.toFixed(0)} ms of CPU`);
  });
});
