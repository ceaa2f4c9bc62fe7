/**
 * PostgreSQL going away, seen from the clients: a node waits for it at start,
 * refuses (never acknowledges) what it cannot store while it is gone, says so
 * in each protocol's own words, and carries on when it is back. Each test runs
 * a PostgreSQL of its own so it can stop it.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import type mqttPacket from 'mqtt-packet';
import { freePort, postgresServerMissing, privatePostgres, type PrivatePostgres } from '../helpers/services.js';
import { api, login, startServer, tempDir, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader, wsUrl } from '../helpers/stomp.js';
import { RawMqtt } from '../helpers/mqtt.js';

const skip = postgresServerMissing();

async function untilTrue(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function capturingLog(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) }));
  return { log, lines };
}

async function stompTcp(node: TestServer, token: string): Promise<RawStomp> {
  const c = await RawStomp.tcp(node.server.address('stomp').port);
  const f = await c.connect({ passcode: token });
  assert.equal(f.command, 'CONNECTED', f.body.toString());
  return c;
}

describe('PostgreSQL unreachable at start', { skip }, () => {
  it('gives up after databaseConnectSeconds, naming the server without its password', async () => {
    const port = await freePort();
    const { log, lines } = capturingLog();
    const t0 = Date.now();
    const dir = tempDir();
    after(() => rmSync(dir, { recursive: true, force: true }));
    await assert.rejects(
      startServer({ databaseUrl: `postgres://herald:s3cret-pw@127.0.0.1:${port}/herald`, databaseConnectSeconds: 1 }, undefined, dir, log),
      (err: Error) => {
        assert.match(err.message, new RegExp(`PostgreSQL at postgres://herald:\\*\\*\\*@127\\.0\\.0\\.1:${port}/herald is unreachable \\(gave up after databaseConnectSeconds=1\\)`));
        assert.match(err.message, /ECONNREFUSED/);
        assert.doesNotMatch(err.message, /s3cret-pw/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 5000, 'gave up within the window (plus one attempt)');
    assert.ok(lines.some((l) => /PostgreSQL unreachable; retrying/.test(l)), 'each retry is logged');
    assert.ok(!lines.some((l) => /s3cret-pw/.test(l)), 'the log never shows the password');
  });

  it('stops at once when PostgreSQL answers but refuses (no such database)', async () => {
    const pg = await privatePostgres();
    const dir = tempDir();
    try {
      await pg.start();
      const t0 = Date.now();
      await assert.rejects(startServer({ databaseUrl: pg.url.replace(/\/postgres$/, '/no_such_db'), databaseConnectSeconds: 30 }, undefined, dir), (err: Error) => {
        assert.match(err.message, /PostgreSQL at postgres:\/\/herald@127\.0\.0\.1:\d+\/no_such_db refused: database "no_such_db" does not exist/);
        return true;
      });
      assert.ok(Date.now() - t0 < 5000, 'no retrying for a refusal that will not change');
    } finally {
      await pg.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('waits for PostgreSQL to come up, then starts and is ready', async () => {
    const pg = await privatePostgres();
    const { log, lines } = capturingLog();
    let node: TestServer | undefined;
    try {
      const starting = startServer({ databaseUrl: pg.url, databaseConnectSeconds: 60 }, undefined, tempDir(), log);
      await untilTrue(() => lines.some((l) => /PostgreSQL unreachable; retrying/.test(l)), 'the retry log line');
      await pg.start();
      node = await starting;
      const ready = await api(node.url, 'GET', '/readyz');
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.equal((ready.body.data as { store: string }).store, 'postgres');
    } finally {
      await node?.stop();
      await pg.destroy();
    }
  });
});

describe('PostgreSQL lost while running', { skip }, () => {
  let pg: PrivatePostgres;
  let node: TestServer;
  let token: string;

  before(async () => {
    pg = await privatePostgres();
    await pg.start();
    node = await startServer({ databaseUrl: pg.url });
    token = await login(node.url);
  });
  after(async () => {
    await node?.stop();
    await pg?.destroy();
  });

  it('fails /readyz, refuses what it cannot store in every protocol, acknowledges nothing, and recovers', async () => {
    const worker = await stompTcp(node, token);
    worker.send('SUBSCRIBE\nid:q\ndestination:/queue/jobs\nreceipt:s\n\n\0');
    await worker.next('RECEIPT');
    const publisher = await stompTcp(node, token);
    const json = new WebSocket(wsUrl(node.url, '/websocket/' + encodeURIComponent(token)));
    const jsonEvents: { event: string; data?: { code?: string; message?: string } }[] = [];
    json.on('message', (d: Buffer) => jsonEvents.push(JSON.parse(d.toString()) as (typeof jsonEvents)[number]));
    await new Promise((r, j) => (json.once('open', r), json.once('error', j)));
    const device = await RawMqtt.open(node.server.address('mqtt').port, 5);
    assert.equal((await device.connect('outage-dev', 'admin', token)).reasonCode, 0);

    await pg.stop();

    const ready = await api(node.url, 'GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.body.message, /store \(postgres\) is unreachable/);

    // HTTP: 503 with Retry-After, and the message is not half-stored.
    const sent = await api(node.url, 'POST', '/api/message/sendMessage', { token, body: { content: 'during the outage', receiver: ['admin'] } });
    assert.equal(sent.status, 503, JSON.stringify(sent.body));
    assert.match(sent.body.message, /message store is unavailable; nothing was changed/);
    assert.equal(sent.headers.get('retry-after'), '5');

    // STOMP: ERROR for the receipted SEND (never a RECEIPT), then the connection closes.
    publisher.send('SEND\ndestination:/queue/jobs\nreceipt:job-1\n\njob 1\0');
    const err = await publisher.next('ERROR');
    assert.equal(frameHeader(err, 'message'), 'service unavailable');
    assert.equal(frameHeader(err, 'receipt-id'), 'job-1');
    assert.match(err.body.toString(), /message store is unavailable, so this SEND was not carried out/);
    await publisher.closedPromise;
    assert.equal(publisher.frames.filter((f) => f.command === 'RECEIPT').length, 0);

    // JSON WebSocket: a read receipt needs the store: an error event, and the socket stays open.
    json.send(JSON.stringify({ action: 'read', id: '1' }));
    await untilTrue(() => jsonEvents.some((e) => e.event === 'error'), 'the JSON error event');
    const jsonErr = jsonEvents.find((e) => e.event === 'error')!;
    assert.equal(jsonErr.data?.code, 'unavailable', JSON.stringify(jsonErr));
    assert.equal(json.readyState, WebSocket.OPEN);

    // MQTT 5: a retained QoS 1 publish gets no PUBACK but DISCONNECT 0x89 (server busy) with the reason.
    device.send({ cmd: 'publish', topic: 'status/outage', payload: Buffer.from('on'), qos: 1, messageId: 7, retain: true, dup: false });
    const disc = (await device.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(disc.reasonCode, 0x89);
    assert.match(disc.properties?.reasonString ?? '', /message store is unavailable/);
    await device.closed;
    assert.equal(device.packets.filter((p) => p.cmd === 'puback').length, 0);

    // MQTT CONNECT with a password needs the store: CONNACK "server unavailable" (v5 0x88, v3.1.1 3).
    const v5 = await RawMqtt.open(node.server.address('mqtt').port, 5);
    assert.equal((await v5.connect('outage-v5', 'admin', ADMIN_PASSWORD)).reasonCode, 0x88);
    const v4 = await RawMqtt.open(node.server.address('mqtt').port, 4);
    assert.equal((await v4.connect('outage-v4', 'admin', ADMIN_PASSWORD)).returnCode, 3);

    // The worker saw nothing: nothing was stored, so nothing was delivered.
    assert.equal(worker.frames.filter((f) => f.command === 'MESSAGE').length, 0);

    await pg.start();
    await untilTrue(async () => (await api(node.url, 'GET', '/readyz')).status === 200, '/readyz to recover');

    // The clients repeat what was refused, and it all goes through once.
    const again = await stompTcp(node, token);
    again.send('SEND\ndestination:/queue/jobs\nreceipt:job-1\n\njob 1\0');
    assert.equal(frameHeader(await again.next('RECEIPT'), 'receipt-id'), 'job-1');
    const job = await worker.next('MESSAGE');
    assert.equal(job.body.toString(), 'job 1');

    const resent = await api<{ id: string }>(node.url, 'POST', '/api/message/sendMessage', { token, body: { content: 'after the outage', receiver: ['admin'] } });
    assert.equal(resent.status, 200, JSON.stringify(resent.body));
    const page = await api<{ records: { content: string }[]; total: number }>(node.url, 'GET', '/api/message/getMessagePage?page=1&size=10', { token });
    assert.deepEqual(
      page.body.data.records.map((r) => r.content),
      ['after the outage'],
      'the refused send left no record behind',
    );

    const back = await RawMqtt.open(node.server.address('mqtt').port, 5);
    assert.equal((await back.connect('outage-dev', 'admin', ADMIN_PASSWORD)).reasonCode, 0);
    back.send({ cmd: 'publish', topic: 'status/outage', payload: Buffer.from('on'), qos: 1, messageId: 7, retain: true, dup: false });
    assert.equal(((await back.next('puback')) as mqttPacket.IPubackPacket).messageId, 7);

    await new Promise((r) => setTimeout(r, 200));
    assert.equal(worker.frames.filter((f) => f.command === 'MESSAGE').length, 0, 'job 1 arrived exactly once');
    for (const c of [worker, again]) c.close();
    back.sock.end();
    json.close();
  });

  it('gives no PUBACK for a QoS 1 message an absent persistent session could not keep, and keeps it once repeated', async () => {
    const port = node.server.address('mqtt').port;
    const keeper = await RawMqtt.open(port, 5);
    assert.equal((await keeper.connect('keeper', 'admin', token, { clean: false, properties: { sessionExpiryInterval: 600 } })).reasonCode, 0);
    keeper.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'alarm/#', qos: 1 }] });
    await keeper.next('suback');
    keeper.send({ cmd: 'disconnect' });
    await keeper.closed;
    const publisher = await RawMqtt.open(port, 5);
    assert.equal((await publisher.connect('alarm-pub', 'admin', token)).reasonCode, 0);
    // Once published to, the topic is known not to be a chat thread for a few seconds: the next publish needs the store only for the session.
    publisher.send({ cmd: 'publish', topic: 'alarm/1', payload: Buffer.from('warm-up'), qos: 1, messageId: 2, retain: false, dup: false });
    await publisher.next('puback');

    await pg.stop();
    publisher.send({ cmd: 'publish', topic: 'alarm/1', payload: Buffer.from('fire'), qos: 1, messageId: 3, retain: false, dup: false });
    const disc = (await publisher.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(disc.reasonCode, 0x89, 'server busy: the session could not keep it');
    await publisher.closed;
    assert.equal(publisher.packets.filter((p) => p.cmd === 'puback').length, 0, 'never acknowledged');

    await pg.start();
    await untilTrue(async () => (await api(node.url, 'GET', '/readyz')).status === 200, '/readyz to recover');
    const again = await RawMqtt.open(port, 5);
    assert.equal((await again.connect('alarm-pub', 'admin', token)).reasonCode, 0);
    again.send({ cmd: 'publish', topic: 'alarm/1', payload: Buffer.from('fire'), qos: 1, messageId: 3, retain: false, dup: true });
    assert.equal(((await again.next('puback')) as mqttPacket.IPubackPacket).messageId, 3);
    const back = await RawMqtt.open(port, 5);
    const ack = await back.connect('keeper', 'admin', token, { clean: false, properties: { sessionExpiryInterval: 600 } });
    assert.equal(ack.sessionPresent, true);
    for (const body of ['warm-up', 'fire']) {
      const got = (await back.next('publish')) as mqttPacket.IPublishPacket;
      assert.equal(got.payload.toString(), body);
      back.send({ cmd: 'puback', messageId: got.messageId! });
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(back.packets.filter((p) => p.cmd === 'publish').length, 0, 'kept once: nothing more comes');
    for (const c of [again, back]) c.sock.end();
  });
});
