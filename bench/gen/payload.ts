/**
 * Message bodies that carry who sent them, their sequence number and when,
 * so every receiver can count loss and duplicates per message and measure
 * latency (CLOCK_MONOTONIC, the same clock in every process of the machine).
 *
 *   PPPPPP.SSSSSSSSSS.TTTTTTTTTTTTTTTT.xxxx…   (ASCII, BODY bytes in all)
 *   publisher  sequence    send time µs      padding
 *
 * ASCII keeps the body valid UTF-8, so STOMP frames carrying it are text.
 */
export const STAMP_BYTES = 35;
const PUB = 0;
const SEQ = 7;
const TIME = 18;

export function bodyBytes(): number {
  const n = Number(process.env['BENCH_BODY'] ?? 100);
  if (!Number.isInteger(n) || n < STAMP_BYTES) throw new Error(`BENCH_BODY must be a whole number of bytes ≥ ${STAMP_BYTES}, not ${process.env['BENCH_BODY']}`);
  return n;
}

/** A body of `size` bytes: stamp fields zeroed, then padding. */
export function bodyTemplate(size: number): Buffer {
  const b = Buffer.alloc(size, 0x78 /* x */);
  b.write('000000.0000000000.0000000000000000.', 0, 'latin1');
  return b;
}

function writeDigits(buf: Buffer, at: number, width: number, value: number): void {
  for (let i = at + width - 1; i >= at; i--) {
    buf[i] = 0x30 + (value % 10);
    value = Math.floor(value / 10);
  }
}

/** Writes the stamp into `buf` at `at` (where a copy of the template lies). */
export function stamp(buf: Buffer, at: number, pub: number, seq: number, timeUs: number): void {
  writeDigits(buf, at + PUB, 6, pub);
  writeDigits(buf, at + SEQ, 10, seq);
  writeDigits(buf, at + TIME, 16, timeUs);
}

function readDigits(buf: Buffer, at: number, width: number): number {
  let v = 0;
  for (let i = at; i < at + width; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** The last decoded stamp (fields, not an object, so decoding allocates nothing). */
export const decoded = { pub: 0, seq: 0, timeUs: 0 };

/** Decodes the stamp of a body of `length` bytes at `at`; false when it is not one of ours or has the wrong length. */
export function decode(buf: Buffer, at: number, length: number, expectedLength: number): boolean {
  if (length !== expectedLength || length < STAMP_BYTES) return false;
  const pub = readDigits(buf, at + PUB, 6);
  const seq = readDigits(buf, at + SEQ, 10);
  const t = readDigits(buf, at + TIME, 16);
  if (pub < 0 || seq < 0 || t < 0) return false;
  decoded.pub = pub;
  decoded.seq = seq;
  decoded.timeUs = t;
  return true;
}
