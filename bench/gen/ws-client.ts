/**
 * A small WebSocket client (RFC 6455) for the load generator: the opening
 * handshake (Sec-WebSocket-Accept checked, subprotocol negotiated), masked
 * client frames that a publisher can build straight into one buffer and
 * write many at a time, and a decoder for every server frame (fragments
 * reassembled, ping answered, close answered). Written here rather than
 * using `ws` so the generator spends little CPU per message and per connect
 * and writes a burst of frames with one system call, as a busy browser tab
 * would not but a load generator must.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const EMPTY = Buffer.alloc(0);

let seed = (Date.now() ^ process.pid) >>> 0 || 1;
/** xorshift32: mask keys need to vary, not to be secret, in a load generator. */
function nextMask(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed;
}

/** Bytes of a client frame header (with its mask key) for a payload of `n` bytes. */
export function frameHeaderBytes(n: number): number {
  return (n < 126 ? 2 : n < 65536 ? 4 : 10) + 4;
}

/**
 * Writes a final, masked frame header for a payload of `n` bytes at `at`;
 * the payload must follow at the returned offset and then be masked with
 * `maskPayload(buf, returnedOffset, n)`.
 */
export function writeFrameHeader(buf: Buffer, at: number, n: number, opcode: number): number {
  buf[at++] = 0x80 | opcode;
  if (n < 126) buf[at++] = 0x80 | n;
  else if (n < 65536) {
    buf[at++] = 0x80 | 126;
    buf.writeUInt16BE(n, at);
    at += 2;
  } else {
    buf[at++] = 0x80 | 127;
    buf.writeUInt32BE(Math.floor(n / 2 ** 32), at);
    buf.writeUInt32BE(n >>> 0, at + 4);
    at += 8;
  }
  buf.writeUInt32BE(nextMask(), at);
  return at + 4;
}

/** Masks `n` payload bytes at `at` with the 4-byte key just before them. */
export function maskPayload(buf: Buffer, at: number, n: number): void {
  const k0 = buf[at - 4]!;
  const k1 = buf[at - 3]!;
  const k2 = buf[at - 2]!;
  const k3 = buf[at - 1]!;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    buf[at + i]! ^= k0;
    buf[at + i + 1]! ^= k1;
    buf[at + i + 2]! ^= k2;
    buf[at + i + 3]! ^= k3;
  }
  for (; i < n; i++) buf[at + i]! ^= i % 4 === 0 ? k0 : i % 4 === 1 ? k1 : i % 4 === 2 ? k2 : k3;
}

/** One whole masked frame around `payload`. */
export function encodeFrame(payload: Buffer, opcode = 0x1): Buffer {
  const out = Buffer.allocUnsafe(frameHeaderBytes(payload.length) + payload.length);
  const at = writeFrameHeader(out, 0, payload.length, opcode);
  payload.copy(out, at);
  maskPayload(out, at, payload.length);
  return out;
}

export interface WsOpenOptions {
  port: number;
  path: string;
  protocols: string[];
  localAddress?: string;
  localPort?: number;
  /** Reject if the handshake has not finished by then. */
  timeoutMs?: number;
}

export class WsClient {
  /** Called with each whole message's payload (a view: copy it to keep it). */
  onMessage: (payload: Buffer) => void = () => undefined;
  onClose: (why: string) => void = () => undefined;
  protocol = '';
  closed = false;
  private pending: Buffer = EMPTY;
  private fragments: Buffer[] = [];

  private constructor(readonly socket: Socket) {}

  static open(o: WsOpenOptions): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port: o.port, host: '127.0.0.1', localAddress: o.localAddress, localPort: o.localPort });
      socket.setNoDelay(true);
      const key = randomBytes(16).toString('base64');
      const accept = createHash('sha1').update(key + GUID).digest('base64');
      let head: Buffer = EMPTY;
      let done = false;
      const timer = setTimeout(() => fail(new Error(`WebSocket handshake not finished within ${o.timeoutMs} ms`)), o.timeoutMs ?? 30_000);
      const fail = (err: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once('error', fail);
      socket.once('close', () => fail(new Error('connection closed during the WebSocket handshake')));
      socket.once('connect', () => {
        socket.write(
          `GET ${o.path} HTTP/1.1\r\nHost: 127.0.0.1:${o.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${o.protocols.join(', ')}\r\n\r\n`,
        );
      });
      const onHead = (chunk: Buffer): void => {
        head = head.length ? Buffer.concat([head, chunk]) : chunk;
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 16384) fail(new Error('WebSocket handshake answer over 16 KiB'));
          return;
        }
        const text = head.toString('latin1', 0, end);
        const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
        if (status !== '101') return fail(new Error(`WebSocket handshake refused: ${text.split('\r\n', 1)[0]}`));
        const h = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(text)?.[1]?.trim();
        if (h('sec-websocket-accept') !== accept) return fail(new Error('WebSocket handshake with a wrong Sec-WebSocket-Accept'));
        done = true;
        clearTimeout(timer);
        socket.removeListener('data', onHead);
        socket.removeListener('error', fail);
        socket.removeAllListeners('close');
        const ws = new WsClient(socket);
        ws.protocol = h('sec-websocket-protocol') ?? '';
        socket.on('data', (d: Buffer) => ws.decode(d));
        socket.on('error', () => undefined);
        socket.on('close', () => {
          ws.closed = true;
          ws.onClose('connection closed');
        });
        resolve(ws);
        const rest = head.subarray(end + 4);
        if (rest.length) ws.decode(rest);
      };
      socket.on('data', onHead);
    });
  }

  /** Sends one text frame. */
  send(payload: Buffer | string): void {
    this.socket.write(encodeFrame(typeof payload === 'string' ? Buffer.from(payload) : payload));
  }

  /** Writes bytes that already are whole frames (a batch built with writeFrameHeader). */
  writeFrames(frames: Buffer): boolean {
    return this.socket.write(frames);
  }

  close(): void {
    this.socket.destroy();
  }

  private decode(chunk: Buffer): void {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let pos = 0;
    const end = buf.length;
    while (end - pos >= 2) {
      const b0 = buf[pos]!;
      const b1 = buf[pos + 1]!;
      let n = b1 & 0x7f;
      let at = pos + 2;
      if (n === 126) {
        if (end - at < 2) break;
        n = buf.readUInt16BE(at);
        at += 2;
      } else if (n === 127) {
        if (end - at < 8) break;
        n = buf.readUInt32BE(at) * 2 ** 32 + buf.readUInt32BE(at + 4);
        at += 8;
      }
      if (b1 & 0x80) {
        this.onClose('the server sent a masked frame (RFC 6455 forbids it)');
        this.socket.destroy();
        return;
      }
      if (end - at < n) break;
      const payload = buf.subarray(at, at + n);
      pos = at + n;
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (opcode === 0x8) {
        this.closed = true;
        const code = n >= 2 ? payload.readUInt16BE(0) : 1005;
        this.onClose(`WebSocket close ${code} ${payload.toString('utf8', 2)}`);
        this.socket.end(encodeFrame(payload.subarray(0, 2), 0x8));
        return;
      }
      if (opcode === 0x9) {
        this.socket.write(encodeFrame(payload, 0xa));
        continue;
      }
      if (opcode === 0xa) continue;
      if (!fin) {
        this.fragments.push(Buffer.from(payload));
        continue;
      }
      if (opcode === 0x0 && this.fragments.length) {
        this.fragments.push(payload);
        const whole = Buffer.concat(this.fragments);
        this.fragments = [];
        this.onMessage(whole);
      } else this.onMessage(payload);
    }
    this.pending = pos < end ? Buffer.from(buf.subarray(pos)) : EMPTY;
  }
}
