/**
 * The generator's own STOMP 1.2 frame parser, written apart from the
 * server's (src/protocols/stomp/codec.ts) so a server bug cannot hide
 * behind a shared parser. Frames may span chunks and a chunk may hold
 * several frames and heart-beat EOLs; every frame is parsed whole: command,
 * every header (escapes decoded), and the body by `content-length` or up to
 * the NUL.
 */
export interface Frame {
  command: string;
  headers: [string, string][];
  /** The body bytes (a view of the received data; copy it to keep it). */
  body: Buffer;
}

export function headerOf(f: Frame, name: string): string | undefined {
  for (const [k, v] of f.headers) if (k === name) return v;
  return undefined;
}

function unescape(s: string): string {
  if (!s.includes('\\')) return s;
  return s.replace(/\\(.)/g, (_, c: string) => {
    if (c === 'n') return '\n';
    if (c === 'r') return '\r';
    if (c === 'c') return ':';
    if (c === '\\') return '\\';
    throw new Error(`STOMP frame with an undefined escape "\\${c}" in a header`);
  });
}

const EMPTY = Buffer.alloc(0);

export class FrameParser {
  private pending: Buffer = EMPTY;
  /** Frames parsed so far. */
  frames = 0;

  feed(chunk: Buffer, emit: (f: Frame) => void): void {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const end = buf.length;
    let pos = 0;
    for (;;) {
      // Heart-beats: EOLs between frames.
      while (pos < end && (buf[pos] === 0x0a || buf[pos] === 0x0d)) pos++;
      if (pos >= end) break;
      const start = pos;
      // Command and headers, line by line, up to the empty line.
      let lineStart = pos;
      let command: string | undefined;
      const headers: [string, string][] = [];
      let bodyStart = -1;
      for (;;) {
        const nl = buf.indexOf(0x0a, lineStart);
        if (nl < 0) break;
        const lineEnd = nl > lineStart && buf[nl - 1] === 0x0d ? nl - 1 : nl;
        if (lineEnd === lineStart) {
          bodyStart = nl + 1;
          break;
        }
        const line = buf.toString('utf8', lineStart, lineEnd);
        if (command === undefined) command = line;
        else {
          const colon = line.indexOf(':');
          if (colon < 0) throw new Error(`STOMP header line without a colon: ${JSON.stringify(line.slice(0, 80))}`);
          const k = line.slice(0, colon);
          const v = line.slice(colon + 1);
          // CONNECT and CONNECTED headers are not escaped (STOMP 1.2).
          headers.push(command === 'CONNECTED' ? [k, v] : [unescape(k), unescape(v)]);
        }
        lineStart = nl + 1;
      }
      if (bodyStart < 0 || command === undefined) {
        pos = start;
        break; // header block incomplete
      }
      let length = -1;
      for (const [k, v] of headers) {
        if (k === 'content-length') {
          length = Number(v);
          if (!Number.isInteger(length) || length < 0) throw new Error(`STOMP ${command} with a bad content-length "${v}"`);
          break;
        }
      }
      let bodyEnd: number;
      if (length >= 0) {
        if (bodyStart + length + 1 > end) {
          pos = start;
          break;
        }
        if (buf[bodyStart + length] !== 0) throw new Error(`STOMP ${command}: no NUL after the content-length (${length}) bytes of the body`);
        bodyEnd = bodyStart + length;
      } else {
        bodyEnd = buf.indexOf(0, bodyStart);
        if (bodyEnd < 0) {
          pos = start;
          break;
        }
      }
      this.frames++;
      emit({ command, headers, body: buf.subarray(bodyStart, bodyEnd) });
      pos = bodyEnd + 1;
    }
    this.pending = pos < end ? Buffer.from(buf.subarray(pos)) : EMPTY;
  }
}
