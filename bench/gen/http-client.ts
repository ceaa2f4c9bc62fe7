/**
 * HTTP/1.1 clients with keep-alive for the durable-send scenario, one
 * request at a time per connection (no pipelining), like a pool of
 * keep-alive connections in a back end:
 *  - `raw` (default): requests written as bytes, responses parsed here
 *    (status line, headers, content-length or chunked body); costs the
 *    generator a few µs per request, so the server is what is measured;
 *  - `agent`: node:http with a keep-alive Agent, the client most Node
 *    back ends use; costs the generator several times more per request.
 */
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';

export interface HttpResult {
  status: number;
  body: Buffer;
}

export interface HttpClient {
  post(path: string, headers: Record<string, string>, body: Buffer): Promise<HttpResult>;
  close(): void;
}

const EMPTY = Buffer.alloc(0);

/** One keep-alive connection; reconnects when the server closes it. */
class RawConnection {
  private socket: Socket | undefined;
  private buf: Buffer = EMPTY;
  private waiter: { resolve: (r: HttpResult) => void; reject: (e: Error) => void } | undefined;

  constructor(private readonly port: number) {}

  private open(): Socket {
    const s = connect(this.port, '127.0.0.1');
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => this.onData(d));
    const gone = (err?: Error): void => {
      if (this.socket === s) this.socket = undefined;
      this.buf = EMPTY;
      const w = this.waiter;
      this.waiter = undefined;
      w?.reject(err ?? new Error('the server closed the connection'));
    };
    s.on('error', gone);
    s.on('close', () => gone());
    this.socket = s;
    return s;
  }

  send(bytes: Buffer): Promise<HttpResult> {
    const s = this.socket ?? this.open();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      s.write(bytes);
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    const headEnd = this.buf.indexOf('\r\n\r\n');
    if (headEnd < 0) return;
    const head = this.buf.toString('latin1', 0, headEnd);
    const status = Number(head.slice(9, 12));
    const lower = head.toLowerCase();
    const start = headEnd + 4;
    let body: Buffer;
    let consumed: number;
    const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
    if (cl) {
      const n = Number(cl[1]);
      if (this.buf.length < start + n) return;
      body = this.buf.subarray(start, start + n);
      consumed = start + n;
    } else if (/\r\ntransfer-encoding:\s*chunked/.test(lower)) {
      const parts: Buffer[] = [];
      let at = start;
      for (;;) {
        const eol = this.buf.indexOf('\r\n', at);
        if (eol < 0) return;
        const size = parseInt(this.buf.toString('latin1', at, eol), 16);
        if (this.buf.length < eol + 2 + size + 2) return;
        if (size === 0) {
          consumed = eol + 4;
          break;
        }
        parts.push(this.buf.subarray(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else {
      body = EMPTY;
      consumed = start;
    }
    this.buf = consumed < this.buf.length ? Buffer.from(this.buf.subarray(consumed)) : EMPTY;
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve({ status, body: Buffer.from(body) });
    if (/\r\nconnection:\s*close/.test(lower)) this.socket?.destroy();
  }

  close(): void {
    this.socket?.destroy();
  }
}

export function rawClient(port: number): HttpClient {
  const conn = new RawConnection(port);
  return {
    post(path, headers, body) {
      let head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${body.length}\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      return conn.send(Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body]));
    },
    close: () => conn.close(),
  };
}

/** node:http through a keep-alive Agent shared by every client of the process. */
export function agentClient(port: number, agent: Agent): HttpClient {
  return {
    post(path, headers, body) {
      return new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { ...headers, 'content-length': body.length } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });
    },
    close: () => undefined,
  };
}
