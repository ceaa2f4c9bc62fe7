/**
 * Fair reading's edges: what a client sent before it left, or before the
 * bytes that broke its stream, is handled even when it was past the
 * iteration's share and waiting for the next (read-budget.ts).
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { ADMIN, RawMqtt, tcpUrl } from '../helpers/mqtt.js';
import { ADMIN_PASSWORD, startServer, type TestServer } from '../helpers/server.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A client WebSocket frame (masked with zeros), FIN set. */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n, 0, 0, 0, 0]) : Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff, 0, 0, 0, 0]);
  return Buffer.concat([head, payload]);
}

describe('fair reading: nothing sent before a close or a broken stream is lost to the share', () => {
  let s: TestServer;
  let watcher: MqttClient;
  const got: string[] = [];
  before(async () => {
    s = await startServer({ publishRatePerSecond: 0, wsMessagesPerSecond: 0 });
    watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    watcher.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
    await watcher.subscribeAsync(['edge/#', 'e/#'], { qos: 0 });
  });
  after(async () => {
    await watcher.endAsync();
    await s.stop();
  });

  it('MQTT over WebSocket: 1,500 PUBLISHes, DISCONNECT and the close frame in one write: all 1,500 delivered, the will discarded', async () => {
    got.length = 0;
    const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/mqtt', 'mqtt');
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    const connack = new Promise((r) => ws.once('message', r));
    ws.send(
      mqttPacket.generate({
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'leaver', clean: true, keepalive: 60,
        username: 'admin', password: Buffer.from(ADMIN_PASSWORD), will: { topic: 'edge/will', payload: Buffer.from('gone'), qos: 0, retain: false },
      }),
    );
    await connack;
    const n = 1500;
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) parts.push(clientFrame(2, mqttPacket.generate({ cmd: 'publish', topic: 'edge/ws', payload: Buffer.from(String(i)), qos: 0, dup: false, retain: false })));
    parts.push(clientFrame(2, mqttPacket.generate({ cmd: 'disconnect' })));
    parts.push(clientFrame(8, Buffer.from([0x03, 0xe8])));
    const closed = new Promise((r) => ws.once('close', r));
    (ws as unknown as { _socket: Socket })._socket.write(Buffer.concat(parts));
    await closed;
    await until(() => got.length >= n, `${n} messages (have ${got.length})`);
    await sleep(300);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `edge/ws ${i}`), 'every PUBLISH, in order, and no will');
  });

  it('MQTT over TCP: 1,500 PUBLISHes, then a packet over mqttMaxPacketBytes, in one write: all 1,500 delivered before the close', async () => {
    got.length = 0;
    const raw = await RawMqtt.open(s.server.address('mqtt').port, 4);
    await raw.connect('breaker', 'admin', ADMIN_PASSWORD);
    const n = 1500;
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) parts.push(mqttPacket.generate({ cmd: 'publish', topic: 'edge/tcp', payload: Buffer.from(String(i)), qos: 0, dup: false, retain: false }));
    parts.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])); // a PUBLISH announcing 256 MiB
    raw.sock.write(Buffer.concat(parts));
    await raw.closed;
    await until(() => got.length >= n, `${n} messages (have ${got.length})`);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `edge/tcp ${i}`));
  });

  it('STOMP over TCP: SENDs past the share, then a frame with a bad escape, in one write: every SEND delivered, then the ERROR', async () => {
    got.length = 0;
    const sock = connect(s.server.address('stomp').port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    sock.write(`CONNECT\naccept-version:1.2\nhost:/\nlogin:admin\npasscode:${ADMIN_PASSWORD}\nheart-beat:0,0\n\n\0`);
    await until(() => answer.includes('CONNECTED'), 'CONNECTED');
    // 32-byte frames: 512 to a 16 KiB parse slice, so the 1,001st to 1,020th wait in the inbox of the
    // second slice when the bad frame right after them is read.
    const n = 1020;
    const frames = Array.from({ length: n }, (_, i) => `SEND\ndestination:/topic/e.s\n\n${i.toString(36).padStart(2, '0')}\0`);
    assert.equal(Buffer.byteLength(frames[0]!), 32);
    const closed = new Promise((r) => sock.once('close', r));
    sock.write(frames.join('') + 'SEND\ndestination:/topic/e.s\nx:\\q\n\nbad\0');
    await closed;
    await until(() => got.length >= n, `${n} messages (have ${got.length})`);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `e/s ${i.toString(36).padStart(2, '0')}`));
    assert.match(answer, /ERROR\n[^]*undefined escape sequence/);
  });
});
