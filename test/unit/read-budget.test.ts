/**
 * Fair reading (read-budget.ts, metered-ws.ts): a connection's reads in one
 * event-loop iteration stop at its share, the rest follows in later
 * iterations, in order; and a protocol's own pause is never undone by the
 * end of a share.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { loopTurn } from '../../src/clock.js';
import { meteredWebSocket } from '../../src/transports/metered-ws.js';
import { FairReader, TURN_BYTES, TURN_MESSAGES } from '../../src/transports/read-budget.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A loopback socket pair: `[server side, client side]`. */
async function socketPair(server: Server): Promise<[Socket, Socket]> {
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  const [s] = await accepted;
  await once(client, 'connect');
  return [s, client];
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7) & 0xff;
  return b;
}

describe('FairReader (TCP)', () => {
  let server: Server;
  before(async () => {
    server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  after(() => server.close());

  it('reads about TURN_BYTES per event-loop iteration, the rest in later iterations, every byte in order', async () => {
    const [s, c] = await socketPair(server);
    const reader = new FairReader(s);
    const perTurn = new Map<number, number>();
    const got: Buffer[] = [];
    reader.read((chunk) => {
      const t = loopTurn();
      perTurn.set(t, (perTurn.get(t) ?? 0) + chunk.length);
      got.push(chunk);
    });
    const sent = pattern(4 * 1024 * 1024);
    c.write(sent);
    await until(() => got.reduce((n, b) => n + b.length, 0) === sent.length, 'every byte');
    assert.ok(Buffer.concat(got).equals(sent), 'the bytes, in order');
    // At most the share, plus the one read that crossed it (a read is at most 64 KiB).
    for (const [turn, bytes] of perTurn) assert.ok(bytes < TURN_BYTES + 64 * 1024, `iteration ${turn} read ${bytes} bytes`);
    assert.ok(perTurn.size >= sent.length / (TURN_BYTES + 64 * 1024), `${perTurn.size} iterations`);
    c.destroy();
    s.destroy();
  });

  it('stays paused while its protocol paused it, though its share of the iteration has ended', async () => {
    const [s, c] = await socketPair(server);
    const reader = new FairReader(s);
    let bytes = 0;
    let pausedAt = -1;
    reader.read((chunk) => {
      bytes += chunk.length;
      if (pausedAt < 0 && bytes >= TURN_BYTES) {
        reader.pause(); // the protocol's own pause, in the read that also used up the share
        pausedAt = bytes;
      }
    });
    const sent = pattern(2 * 1024 * 1024);
    c.write(sent);
    await until(() => pausedAt >= 0, 'the pause');
    await sleep(100); // many iterations: the share's end comes and goes
    assert.equal(bytes, pausedAt, 'nothing read while paused');
    reader.resume();
    await until(() => bytes === sent.length, 'the rest after resume');
    c.destroy();
    s.destroy();
  });
});

describe('meteredWebSocket: the iteration share for WebSocket messages', () => {
  let wss: WebSocketServer;
  let port: number;
  before(async () => {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1', WebSocket: meteredWebSocket(0), perMessageDeflate: false });
    await once(wss, 'listening');
    port = (wss.address() as { port: number }).port;
  });
  after(() => wss.close());

  /** Opens a client and returns its server-side socket and the client's raw socket. */
  async function open(): Promise<[WebSocket, Socket, WebSocket]> {
    const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    await once(client, 'open');
    const [server] = await accepted;
    return [server, (client as unknown as { _socket: Socket })._socket, client];
  }

  /** `n` masked binary frames (mask of zeros) of `size` bytes, the i-th holding i, in one buffer. */
  function frames(n: number, size: number): Buffer {
    const header = size < 126 ? 6 : 8;
    const out = Buffer.alloc(n * (header + size));
    for (let i = 0; i < n; i++) {
      const at = i * (header + size);
      out[at] = 0x82;
      if (size < 126) out[at + 1] = 0x80 | size;
      else {
        out[at + 1] = 0x80 | 126;
        out.writeUInt16BE(size, at + 2);
      }
      out.writeUInt32BE(i, at + header);
    }
    return out;
  }

  it('delivers at most TURN_MESSAGES messages per iteration, all of them in order', async () => {
    const [server, raw, client] = await open();
    const perTurn = new Map<number, number>();
    const got: number[] = [];
    server.on('message', (d: Buffer) => {
      const t = loopTurn();
      perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
      got.push(d.readUInt32BE(0));
    });
    const n = 20_000;
    raw.write(frames(n, 8));
    await until(() => got.length === n, 'every message');
    got.forEach((v, i) => assert.equal(v, i));
    for (const [turn, count] of perTurn) assert.ok(count <= TURN_MESSAGES, `iteration ${turn} delivered ${count}`);
    assert.ok(perTurn.size >= n / TURN_MESSAGES, `${perTurn.size} iterations`);
    client.terminate();
  });

  it('delivers about TURN_BYTES of messages per iteration', async () => {
    const [server, raw, client] = await open();
    const perTurn = new Map<number, number>();
    let count = 0;
    server.on('message', (d: Buffer) => {
      const t = loopTurn();
      perTurn.set(t, (perTurn.get(t) ?? 0) + d.length);
      count++;
    });
    raw.write(frames(400, 4096)); // 1.6 MB in 400 messages: the byte share, not the count, holds
    await until(() => count === 400, 'every message');
    for (const [turn, bytes] of perTurn) assert.ok(bytes <= TURN_BYTES, `iteration ${turn} delivered ${bytes} bytes`);
    client.terminate();
  });

  it('a pause while held messages are handed over stops them until resume, then the rest follow in order', async () => {
    const [server, raw, client] = await open();
    const got: number[] = [];
    server.on('message', (d: Buffer) => {
      got.push(d.readUInt32BE(0));
      if (got.length === TURN_MESSAGES + 500) server.pause();
    });
    const n = 5000;
    raw.write(frames(n, 8));
    await until(() => got.length >= TURN_MESSAGES + 500, 'the messages before the pause');
    await sleep(100);
    assert.equal(got.length, TURN_MESSAGES + 500, 'none delivered while paused, not even those already read');
    server.resume();
    await until(() => got.length === n, 'the rest');
    got.forEach((v, i) => assert.equal(v, i));
    client.terminate();
  });
});
