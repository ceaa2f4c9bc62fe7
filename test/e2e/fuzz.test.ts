/**
 * Hostile input against a live server: random bytes and randomly filled,
 * well-formed frames on every listener (STOMP over TCP, MQTT over TCP, the
 * JSON WebSocket). Whatever arrives, the server answers in protocol terms or
 * closes the connection; no handler fails with an internal error, and the
 * server keeps serving well-behaved clients. Seeded, so a failure replays.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { api, login, startServer, tempDir, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';
import { RawMqtt } from '../helpers/mqtt.js';

const SEED = Number(process.env['HERALD_FUZZ_SEED'] ?? 20261126);
const RUNS = Number(process.env['HERALD_FUZZ_RUNS'] ?? 40);

/** Writes the chunks, then waits until the server closes or goes quiet for a moment. */
function throwAt(port: number, chunks: Buffer[]): Promise<Buffer> {
  return new Promise((resolve) => {
    const sock: Socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(quiet);
      sock.destroy();
      resolve(Buffer.concat(got));
    };
    const settle = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(done, 100);
    };
    sock.on('data', (d: Buffer) => (got.push(d), settle()));
    sock.on('close', done);
    sock.on('error', done);
    sock.on('connect', () => {
      for (const c of chunks) sock.write(c);
      settle();
    });
  });
}

describe('hostile input on every listener', () => {
  let s: TestServer;
  let token: string;
  const failures: string[] = [];
  before(async () => {
    const log = pino(
      { level: 'error' },
      new Writable({
        write: (chunk: Buffer, _enc, cb) => {
          failures.push(chunk.toString());
          cb();
        },
      }),
    );
    s = await startServer({ maxBodyBytes: 65_536, mqttMaxPacketBytes: 65_536 }, undefined, tempDir(), log);
    token = await login(s.url);
  });
  after(() => s.stop());

  const text = fc.string({ maxLength: 40, unit: fc.constantFrom('a', 'b', '/', '.', '#', '+', '$', ':', '\\', '\n', 'é', '\u0000', ' ', '*') });

  it('STOMP over TCP: random bytes and random frames after CONNECT', async () => {
    const port = s.server.address('stomp').port;
    const frame = fc.record({
      command: fc.constantFrom('SEND', 'SUBSCRIBE', 'UNSUBSCRIBE', 'ACK', 'NACK', 'BEGIN', 'COMMIT', 'ABORT', 'DISCONNECT', 'CONNECT', 'MESSAGE', 'BOGUS', ''),
      headers: fc.array(fc.tuple(fc.constantFrom('destination', 'id', 'ack', 'receipt', 'transaction', 'content-length', 'content-type', 'since', 'x'), text), { maxLength: 6 }),
      body: fc.uint8Array({ maxLength: 64 }),
    });
    const connectFrame = Buffer.from(`CONNECT\naccept-version:1.2\nhost:h\npasscode:${token}\n\n\0`);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.array(frame, { maxLength: 5 }), async (noise, frames) => {
        await throwAt(port, [Buffer.from(noise)]);
        const encoded = frames.map((f) =>
          Buffer.concat([Buffer.from(`${f.command}\n${f.headers.map(([k, v]) => `${k}:${v.replace(/\n/g, '')}`).join('\n')}\n\n`), Buffer.from(f.body), Buffer.from([0])]),
        );
        await throwAt(port, [connectFrame, ...encoded]);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('MQTT over TCP: random bytes and randomly filled packets after CONNECT (3.1.1 and 5.0)', async () => {
    const port = s.server.address('mqtt').port;
    const topic = text.filter((t) => t.length > 0);
    const packet = fc.oneof(
      fc.record({ cmd: fc.constant('publish' as const), topic, payload: fc.uint8Array({ maxLength: 64 }), qos: fc.constantFrom(0, 1, 2), retain: fc.boolean(), messageId: fc.integer({ min: 1, max: 65535 }) }),
      fc.record({ cmd: fc.constant('subscribe' as const), messageId: fc.integer({ min: 1, max: 65535 }), subscriptions: fc.array(fc.record({ topic, qos: fc.constantFrom(0, 1, 2) }), { minLength: 1, maxLength: 3 }) }),
      fc.record({ cmd: fc.constant('unsubscribe' as const), messageId: fc.integer({ min: 1, max: 65535 }), unsubscriptions: fc.array(topic, { minLength: 1, maxLength: 3 }) }),
      fc.record({ cmd: fc.constantFrom('puback' as const, 'pubrec' as const, 'pubrel' as const, 'pubcomp' as const), messageId: fc.integer({ min: 1, max: 65535 }) }),
      fc.constant({ cmd: 'pingreq' as const }),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(4 as const, 5 as const), fc.uint8Array({ maxLength: 300 }), fc.array(packet, { maxLength: 6 }), fc.boolean(), async (version, noise, packets, garbageTail) => {
        const gen = (p: object): Buffer => {
          try {
            return mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: version });
          } catch {
            return Buffer.alloc(0); // a field the encoder itself refuses: nothing to send
          }
        };
        const hello = gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: 'fuzz', clean: true, keepalive: 30, username: 'admin', password: Buffer.from(token) });
        await throwAt(port, [Buffer.from(noise)]);
        await throwAt(port, [hello, ...packets.map((p) => gen({ ...p, dup: false, retain: 'retain' in p ? p.retain : false })), ...(garbageTail ? [Buffer.from(noise)] : [])]);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('JSON WebSocket: random JSON and random text', async () => {
    const url = s.url.replace(/^http/, 'ws') + '/websocket/' + token;
    const message = fc.oneof(
      fc.json(),
      fc.record({ action: fc.constantFrom('subscribe', 'unsubscribe', 'publish', 'ack', 'read', 'ping', 'nope'), topic: fc.oneof(text, fc.integer(), fc.constant(null)), id: fc.oneof(text, fc.integer()), data: fc.jsonValue() }).map((o) => JSON.stringify(o)),
      fc.string({ maxLength: 100 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 8 }), async (messages) => {
        const ws = new WebSocket(url);
        await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
        for (const m of messages) ws.send(m);
        ws.send('{"action":"ping"}');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 1000);
          ws.on('message', (d: Buffer) => {
            if (d.toString() === '{"event":"pong"}') (clearTimeout(t), resolve());
          });
          ws.once('close', () => (clearTimeout(t), resolve()));
        });
        ws.close();
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('logged no internal error, and still serves well-behaved clients', async () => {
    assert.deepEqual(failures, [], 'error-level log lines during the fuzzing');
    assert.equal((await api(s.url, 'GET', '/readyz')).status, 200);
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await stomp.connect({ passcode: token })).command, 'CONNECTED');
    stomp.send('SUBSCRIBE\nid:1\ndestination:/topic/after.fuzz\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    const m = await RawMqtt.open(s.server.address('mqtt').port, 5);
    assert.equal((await m.connect('after-fuzz', 'admin', ADMIN_PASSWORD)).reasonCode, 0);
    m.send({ cmd: 'publish', topic: 'after/fuzz', payload: Buffer.from('ok'), qos: 1, messageId: 1, retain: false, dup: false });
    await m.next('puback');
    assert.equal((await stomp.next('MESSAGE')).body.toString(), 'ok');
    stomp.close();
    m.sock.end();
  });
});
