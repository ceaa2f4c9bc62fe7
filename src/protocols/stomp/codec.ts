/**
 * STOMP 1.0 / 1.1 / 1.2 frame codec: bytes in, frames out, and back.
 * Pure: no sockets, no timers. The parser is incremental (a frame may span
 * chunks; a chunk may hold many frames and heart-beat EOLs between them).
 *
 * Frame grammar (STOMP 1.2): command EOL, header lines EOL, empty line,
 * body, NUL. EOL is LF or CR LF. With `content-length` the body is exactly
 * that many octets (NULs allowed) and must be followed by NUL.
 */
import { isAscii, isUtf8 } from 'node:buffer';
import { wsHeadLength, writeWsHead } from '../../transports/ws-frame.js';

export type HeaderList = [name: string, value: string][];

export interface StompFrame {
  command: string;
  /** In wire order, repeats kept; `header()` returns the first (STOMP: first wins). */
  headers: HeaderList;
  body: Buffer;
}

export function header(frame: StompFrame, name: string): string | undefined {
  for (const [k, v] of frame.headers) if (k === name) return v;
  return undefined;
}

export interface ParserLimits {
  /** Largest command + header block in bytes. */
  maxHeaderBytes: number;
  maxHeaders: number;
  maxBodyBytes: number;
}

export const DEFAULT_LIMITS: ParserLimits = { maxHeaderBytes: 16 * 1024, maxHeaders: 64, maxBodyBytes: 1024 * 1024 };

/** A frame that cannot be parsed; the connection must get an ERROR and close. */
export class StompSyntaxError extends Error {
  override name = 'StompSyntaxError';
  constructor(
    message: string,
    /** The `receipt` header of the offending frame, when it got that far. */
    readonly receipt?: string,
  ) {
    super(message);
  }
}

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;
const EMPTY = Buffer.alloc(0);
/** Largest header block read as one string (see decodeHead). */
const ONE_STRING_BLOCK = 512;

/** A copy of `buf[start, end)` (small ones come from Node's shared pool, as Buffer.from's do). */
function copyOf(buf: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  buf.copy(out, 0, start, end);
  return out;
}

/**
 * Where `byte` first is in `buf[from, to)`, as an offset from `from`, or -1.
 * Header lines are short: a loop finds their end faster than a native search
 * on a sub-buffer made for it; a long line goes to the native one.
 */
function indexWithin(buf: Buffer, byte: number, from: number, to: number): number {
  const near = Math.min(to, from + 128);
  for (let i = from; i < near; i++) if (buf[i] === byte) return i - from;
  if (near === to) return -1;
  const found = buf.subarray(near, to).indexOf(byte);
  return found < 0 ? -1 : found + near - from;
}

/** Decodes STOMP 1.1/1.2 header escapes; an undefined escape is a fatal error (spec). */
export function unescapeHeader(s: string): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[++i];
    if (n === 'n') out += '\n';
    else if (n === 'r') out += '\r';
    else if (n === 'c') out += ':';
    else if (n === '\\') out += '\\';
    else throw new StompSyntaxError(`undefined escape sequence "\\${n ?? ''}" in a header`);
  }
  return out;
}

const NEEDS_ESCAPE = /[\\\r\n:]/;
export function escapeHeader(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  return s.replace(/[\\\r\n:]/g, (c) => (c === '\\' ? '\\\\' : c === '\r' ? '\\r' : c === '\n' ? '\\n' : '\\c'));
}

/** 1.0 has no escapes: a value must not break the line structure. */
function stripBreaks(s: string): string {
  return /[\r\n]/.test(s) ? s.replace(/[\r\n]/g, ' ') : s;
}

interface HeadState {
  command: string;
  headers: HeaderList;
  /** Offset of the body from the start of the frame. */
  bodyStart: number;
  contentLength: number | undefined;
  receipt: string | undefined;
}

export type ParseEvent = { type: 'frame'; frame: StompFrame } | { type: 'heartbeat' };

/** A store larger than this is let go once it holds nothing, so one big frame does not pin its buffer for good. */
const KEEP_STORE_BYTES = 64 * 1024;

/**
 * Incremental parser, linear in the bytes fed: a frame split into many
 * small chunks (one byte per WebSocket message, say) costs what the same
 * frame costs in one chunk. Bytes of an incomplete frame are appended to a
 * growable store (its capacity doubles, so each byte is copied a bounded
 * number of times); the header scan and the body's NUL search remember where
 * they stopped and never look at a byte twice. A chunk that holds whole
 * frames is parsed where it lies, without copying.
 */
export class StompParser {
  /** Bytes not yet consumed are `store[from, to)`; they start with the frame being read. */
  private store: Buffer = EMPTY;
  private from = 0;
  private to = 0;
  /** Command and headers of the frame being read, once its header block is complete. */
  private head: HeadState | undefined;
  /** Offset (from the frame's start) of the first byte the current scan has not examined yet. */
  private scanned = 0;
  /** Header scan: where the current line starts, and the lines found so far (start and end offsets from the frame's start, in pairs). */
  private lineStart = 0;
  private readonly lines: number[] = [];
  private workDone = 0;
  /** Escapes apply to every frame but CONNECT/CONNECTED, and not at all in STOMP 1.0. */
  escaping = true;

  constructor(private readonly limits: ParserLimits = DEFAULT_LIMITS) {}

  /**
   * Feeds bytes; calls `emit` for each whole frame and each heart-beat.
   * Throws StompSyntaxError on the first malformed frame (the rest is not read).
   */
  feed(chunk: Buffer, emit: (event: ParseEvent) => void): void {
    if (chunk.length === 0) return;
    // Nothing pending: parse the chunk where it lies and keep only an incomplete tail.
    const direct = this.to === this.from;
    if (!direct) this.append(chunk);
    const buf = direct ? chunk : this.store;
    let pos = direct ? 0 : this.from;
    const end = direct ? chunk.length : this.to;
    for (;;) {
      if (!this.head) {
        if (this.scanned === 0) {
          // Heart-beats: EOLs between frames.
          let beat = false;
          while (pos < end && (buf[pos] === LF || (buf[pos] === CR && pos + 1 < end && buf[pos + 1] === LF))) {
            pos += buf[pos] === CR ? 2 : 1;
            beat = true;
          }
          if (beat) emit({ type: 'heartbeat' });
          if (pos >= end || (buf[pos] === CR && pos + 1 === end)) break;
        }
        const head = this.scanHead(buf, pos, end);
        if (!head) break;
        this.head = head;
        this.scanned = head.bodyStart;
      }
      const h = this.head;
      let stop: number;
      if (h.contentLength !== undefined) {
        stop = h.bodyStart + h.contentLength;
        if (end - pos <= stop) break;
        this.workDone += 1;
        if (buf[pos + stop] !== NUL) {
          throw new StompSyntaxError(
            `frame body is longer than its content-length (${h.contentLength}): no NUL after that many octets`,
            h.receipt,
          );
        }
      } else {
        // The NUL may be at most maxBodyBytes after the body's start; look no further than that.
        const max = this.limits.maxBodyBytes;
        const searchFrom = pos + this.scanned;
        const searchEnd = Math.min(end, pos + h.bodyStart + max + 1);
        const found = searchFrom < searchEnd ? buf.subarray(searchFrom, searchEnd).indexOf(NUL) : -1;
        if (found < 0) {
          this.workDone += Math.max(0, searchEnd - searchFrom);
          this.scanned = searchEnd - pos;
          if (end - pos - h.bodyStart > max) throw new StompSyntaxError(`frame body exceeds the ${max}-byte limit`, h.receipt);
          break;
        }
        this.workDone += found + 1;
        stop = searchFrom - pos + found;
      }
      const bodyLength = stop - h.bodyStart;
      this.workDone += bodyLength;
      // A copy: the frame must not keep the chunk (or the store) it was read from alive.
      const body = bodyLength > 0 ? copyOf(buf, pos + h.bodyStart, pos + stop) : EMPTY;
      this.head = undefined;
      this.scanned = 0;
      this.lineStart = 0;
      this.lines.length = 0;
      pos += stop + 1;
      emit({ type: 'frame', frame: { command: h.command, headers: h.headers, body } });
      // A frame may change `escaping` (CONNECT negotiates the version); later frames see it.
    }
    if (direct) {
      if (pos < end) this.keep(chunk, pos);
    } else if (pos >= end) {
      this.from = this.to = 0;
      if (this.store.length > KEEP_STORE_BYTES) this.store = EMPTY;
    } else {
      this.from = pos;
    }
  }

  /** Starts the store with the unread tail of a chunk parsed in place. */
  private keep(chunk: Buffer, pos: number): void {
    const n = chunk.length - pos;
    if (this.store.length < n) this.store = Buffer.allocUnsafe(Math.max(n * 2, 4096));
    chunk.copy(this.store, 0, pos);
    this.workDone += n;
    this.from = 0;
    this.to = n;
  }

  /**
   * Appends to the store. When it is full the live bytes move to the front
   * (if they fill at most half of it) or to a store twice their size: either
   * way the bytes moved are no more than the bytes appended since the last
   * move, so appending stays linear.
   */
  private append(chunk: Buffer): void {
    if (this.to + chunk.length > this.store.length) {
      const live = this.to - this.from;
      const need = live + chunk.length;
      if (need <= this.store.length / 2) {
        this.store.copyWithin(0, this.from, this.to);
      } else {
        const bigger = Buffer.allocUnsafe(Math.max(need * 2, 4096));
        this.store.copy(bigger, 0, this.from, this.to);
        this.store = bigger;
      }
      this.workDone += live;
      this.from = 0;
      this.to = live;
    }
    chunk.copy(this.store, this.to);
    this.to += chunk.length;
    this.workDone += chunk.length;
  }

  /**
   * Scans the header block of the frame starting at `pos` from where the last
   * scan stopped; returns its command and headers once the empty line that
   * ends it is in, else undefined (the scan position is kept).
   */
  private scanHead(buf: Buffer, pos: number, end: number): HeadState | undefined {
    const { maxHeaderBytes, maxHeaders } = this.limits;
    // A line may end at most maxHeaderBytes after the frame's start; look no further than that.
    const searchEnd = Math.min(end, pos + maxHeaderBytes + 1);
    for (;;) {
      const searchFrom = pos + this.scanned;
      const found = searchFrom < searchEnd ? indexWithin(buf, LF, searchFrom, searchEnd) : -1;
      if (found < 0) {
        this.workDone += Math.max(0, searchEnd - searchFrom);
        this.scanned = searchEnd - pos;
        if (end - pos > maxHeaderBytes) throw new StompSyntaxError(`frame header block exceeds the ${maxHeaderBytes}-byte limit`);
        return undefined;
      }
      this.workDone += found + 1;
      const nl = searchFrom - pos + found;
      this.scanned = nl + 1;
      const lineEnd = nl > this.lineStart && buf[pos + nl - 1] === CR ? nl - 1 : nl;
      if (lineEnd === this.lineStart && this.lines.length > 0) return this.decodeHead(buf, pos, this.lines, nl + 1);
      this.lines.push(this.lineStart, lineEnd);
      if (this.lines.length > 2 * (maxHeaders + 1)) {
        throw new StompSyntaxError(`frame has more than ${maxHeaders} headers`);
      }
      this.lineStart = nl + 1;
    }
  }

  private decodeHead(buf: Buffer, pos: number, lines: number[], bodyStart: number): HeadState {
    this.workDone += bodyStart;
    const block = buf.subarray(pos, pos + bodyStart);
    // Mostly ASCII: then byte offsets are character offsets, and a short block is read as one string.
    // A long one is read line by line: a header kept with a message is a V8 slice of the string it was
    // cut from and keeps all of it alive, while the message is counted by the header's own length.
    const ascii = isAscii(block);
    if (!ascii && !isUtf8(block)) throw new StompSyntaxError('frame command or headers are not valid UTF-8');
    const text = ascii && bodyStart <= ONE_STRING_BLOCK ? block.toString('latin1') : undefined;
    const command = text !== undefined ? text.slice(lines[0]!, lines[1]!) : block.toString('utf8', lines[0]!, lines[1]!);
    // An ASCII block without a backslash holds no escapes: nothing to decode per header.
    const escaping = this.escaping && command !== 'CONNECT' && command !== 'CONNECTED' && (text === undefined || text.includes('\\'));
    const headers: HeaderList = [];
    let contentLength: number | undefined;
    let receipt: string | undefined;
    for (let i = 2; i < lines.length; i += 2) {
      const ls = lines[i]!;
      const le = lines[i + 1]!;
      const line = text !== undefined ? text.slice(ls, le) : block.toString('utf8', ls, le);
      const colon = line.indexOf(':');
      if (colon <= 0) {
        throw new StompSyntaxError(
          colon === 0 ? 'header line has an empty name' : `header line "${line.slice(0, 64)}" has no colon`,
          receipt,
        );
      }
      let name = line.slice(0, colon);
      let value = line.slice(colon + 1);
      if (escaping) {
        name = unescapeHeader(name);
        value = unescapeHeader(value);
      }
      headers.push([name, value]);
      // First occurrence wins (STOMP 1.2 "Repeated Header Entries").
      if (name === 'content-length' && contentLength === undefined) {
        const trimmed = value.trim();
        if (!/^\d{1,15}$/.test(trimmed)) {
          throw new StompSyntaxError(`content-length "${value.slice(0, 32)}" is not a non-negative integer`, receipt);
        }
        contentLength = Number(trimmed);
      } else if (name === 'receipt' && receipt === undefined) {
        receipt = value;
      }
    }
    if (contentLength !== undefined && contentLength > this.limits.maxBodyBytes) {
      throw new StompSyntaxError(
        `content-length ${contentLength} exceeds the ${this.limits.maxBodyBytes}-byte body limit`,
        receipt,
      );
    }
    return { command, headers, bodyStart, contentLength, receipt };
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.to - this.from;
  }

  /**
   * Bytes examined or copied since this parser was made: a frame costs the
   * same whether it came in one chunk or a byte at a time (a test holds it
   * to a small multiple of the bytes fed).
   */
  get work(): number {
    return this.workDone;
  }
}

/**
 * Encodes one frame. `escape` false for STOMP 1.0 and for CONNECT/CONNECTED.
 *
 * The encoder owns `content-length`: it writes the body's real length (when
 * the body is not empty) and drops any the caller passed, so a header copied
 * from elsewhere can never cut a body short and smuggle a frame in after it.
 * A header that cannot be written safely is dropped: one with an empty name,
 * one with a NUL anywhere (stomp.js 2.x splits frames at every NUL, whatever
 * the content-length says) and, without escapes, one whose name holds a colon
 * or a line break. Without escapes, line breaks in values become spaces.
 */
export function encodeFrame(command: string, headers: HeaderList, body: Buffer | string = EMPTY, escape = true): Buffer {
  const bodyBuf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  let head = command + '\n';
  for (const [k, v] of headers) head += headerLine(k, v, escape);
  return frameBytes(head, bodyBuf);
}

/** One header line as encodeFrame writes it (escaped, or with line breaks made spaces), or '' when it cannot be written safely. */
export function headerLine(name: string, value: string, escape: boolean): string {
  if (!writableHeader(name, value, escape)) return '';
  return escape ? `${escapeHeader(name)}:${escapeHeader(value)}\n` : `${name}:${stripBreaks(value)}\n`;
}

/**
 * The line of a header whose name is known to be writable (`prefix` is the
 * name and its colon, as written), as headerLine writes it: '' when the
 * value holds a NUL.
 */
export function valueLine(prefix: string, value: string, escape: boolean): string {
  if (value.includes('\0')) return '';
  return prefix + (escape ? escapeHeader(value) : stripBreaks(value)) + '\n';
}

/**
 * The frame's bytes: `head` (command and header lines), the content-length
 * line when the body is not empty, the empty line, the body and its NUL.
 * With `wsText` set, they come inside one WebSocket frame (text or binary),
 * built in the same buffer.
 */
export function frameBytes(head: string, body: Buffer, wsText?: boolean): Buffer {
  if (body.length > 0) head += `content-length:${body.length}\n`;
  head += '\n';
  const headLen = Buffer.byteLength(head);
  const length = headLen + body.length + 1;
  const room = wsText === undefined ? 0 : wsHeadLength(length);
  const out = Buffer.allocUnsafe(room + length);
  if (wsText !== undefined) writeWsHead(out, length, wsText);
  // As many bytes as characters: ASCII, which latin1 writes the same, faster.
  out.write(head, room, headLen === head.length ? 'latin1' : 'utf8');
  body.copy(out, room + headLen);
  out[out.length - 1] = NUL;
  return out;
}

/** Whether a header can be written without changing the frame's structure (see encodeFrame). */
function writableHeader(name: string, value: string, escape: boolean): boolean {
  if (name.length === 0 || name.includes('\0') || value.includes('\0')) return false;
  // Lenient clients trim names, so " content-length" would count as the real one for them.
  if (name.trim() === 'content-length') return false;
  return escape || !/[:\r\n]/.test(name);
}

export const HEARTBEAT = Buffer.from('\n');
