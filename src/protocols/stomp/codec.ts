/**
 * STOMP 1.0 / 1.1 / 1.2 frame codec: bytes in, frames out, and back.
 * Pure: no sockets, no timers. The parser is incremental (a frame may span
 * chunks; a chunk may hold many frames and heart-beat EOLs between them).
 *
 * Frame grammar (STOMP 1.2): command EOL, header lines EOL, empty line,
 * body, NUL. EOL is LF or CR LF. With `content-length` the body is exactly
 * that many octets (NULs allowed) and must be followed by NUL.
 */
import { isUtf8 } from 'node:buffer';

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
  /** Offset in `pending` where the body starts. */
  bodyStart: number;
  contentLength: number | undefined;
  receipt: string | undefined;
}

export type ParseEvent = { type: 'frame'; frame: StompFrame } | { type: 'heartbeat' };

export class StompParser {
  private pending: Buffer = EMPTY;
  private head: HeadState | undefined;
  /** Escapes apply to every frame but CONNECT/CONNECTED, and not at all in STOMP 1.0. */
  escaping = true;

  constructor(private readonly limits: ParserLimits = DEFAULT_LIMITS) {}

  /**
   * Feeds bytes; calls `emit` for each whole frame and each heart-beat.
   * Throws StompSyntaxError on the first malformed frame (the rest is not read).
   */
  feed(chunk: Buffer, emit: (event: ParseEvent) => void): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let buf = this.pending;
    let pos = 0;
    for (;;) {
      if (!this.head) {
        // Heart-beats: EOLs between frames.
        let beat = false;
        while (pos < buf.length && (buf[pos] === LF || (buf[pos] === CR && buf[pos + 1] === LF))) {
          pos += buf[pos] === CR ? 2 : 1;
          beat = true;
        }
        if (beat) emit({ type: 'heartbeat' });
        if (pos >= buf.length || (buf[pos] === CR && pos + 1 === buf.length)) break;
        const head = this.parseHead(buf, pos);
        if (!head) break;
        this.head = head;
      }
      const h = this.head;
      let end: number;
      if (h.contentLength !== undefined) {
        end = h.bodyStart + h.contentLength;
        if (buf.length <= end) break;
        if (buf[end] !== NUL) {
          throw new StompSyntaxError(
            `frame body is longer than its content-length (${h.contentLength}): no NUL after that many octets`,
            h.receipt,
          );
        }
      } else {
        end = buf.indexOf(NUL, h.bodyStart);
        if ((end < 0 ? buf.length : end) - h.bodyStart > this.limits.maxBodyBytes) {
          throw new StompSyntaxError(`frame body exceeds the ${this.limits.maxBodyBytes}-byte limit`, h.receipt);
        }
        if (end < 0) break;
      }
      const body = end > h.bodyStart ? Buffer.from(buf.subarray(h.bodyStart, end)) : EMPTY;
      this.head = undefined;
      pos = end + 1;
      emit({ type: 'frame', frame: { command: h.command, headers: h.headers, body } });
      // A frame may change `escaping` (CONNECT negotiates the version); later frames see it.
    }
    // Keep only the unread tail; rebase the body offset of a half-read frame.
    if (this.head) this.head.bodyStart -= pos;
    this.pending = pos >= buf.length ? EMPTY : buf.subarray(pos);
    buf = EMPTY;
  }

  /** Parses command and headers starting at `start`, or returns undefined if the block is incomplete. */
  private parseHead(buf: Buffer, start: number): HeadState | undefined {
    const { maxHeaderBytes, maxHeaders } = this.limits;
    // Find the empty line that ends the header block.
    let lineStart = start;
    const lines: [number, number][] = [];
    for (;;) {
      const nl = buf.indexOf(LF, lineStart);
      if (nl < 0 || nl - start > maxHeaderBytes) {
        if (buf.length - start > maxHeaderBytes) {
          throw new StompSyntaxError(`frame header block exceeds the ${maxHeaderBytes}-byte limit`);
        }
        return undefined;
      }
      const lineEnd = nl > lineStart && buf[nl - 1] === CR ? nl - 1 : nl;
      if (lineEnd === lineStart && lines.length > 0) {
        return this.decodeHead(buf, start, lines, nl + 1);
      }
      lines.push([lineStart, lineEnd]);
      if (lines.length > maxHeaders + 1) {
        throw new StompSyntaxError(`frame has more than ${maxHeaders} headers`);
      }
      lineStart = nl + 1;
    }
  }

  private decodeHead(buf: Buffer, start: number, lines: [number, number][], bodyStart: number): HeadState {
    const block = buf.subarray(start, bodyStart);
    if (!isUtf8(block)) throw new StompSyntaxError('frame command or headers are not valid UTF-8');
    const [cs, ce] = lines[0]!;
    const command = buf.toString('utf8', cs, ce);
    const escaping = this.escaping && command !== 'CONNECT' && command !== 'CONNECTED';
    const headers: HeaderList = [];
    let contentLength: number | undefined;
    let receipt: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const [ls, le] = lines[i]!;
      const line = buf.toString('utf8', ls, le);
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
    return this.pending.length;
  }
}

/**
 * Encodes one frame. `escape` false for STOMP 1.0 and for CONNECT/CONNECTED.
 * A `content-length` header is added when the body is not empty (or when the
 * body holds a NUL), unless the caller gave one.
 */
export function encodeFrame(command: string, headers: HeaderList, body: Buffer | string = EMPTY, escape = true): Buffer {
  const bodyBuf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  let head = command + '\n';
  let hasLength = false;
  for (const [k, v] of headers) {
    if (k === 'content-length') hasLength = true;
    head += escape ? `${escapeHeader(k)}:${escapeHeader(v)}\n` : `${stripBreaks(k)}:${stripBreaks(v)}\n`;
  }
  if (!hasLength && bodyBuf.length > 0) head += `content-length:${bodyBuf.length}\n`;
  head += '\n';
  const headLen = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headLen + bodyBuf.length + 1);
  out.write(head, 0, 'utf8');
  bodyBuf.copy(out, headLen);
  out[out.length - 1] = NUL;
  return out;
}

export const HEARTBEAT = Buffer.from('\n');
