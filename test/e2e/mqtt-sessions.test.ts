/**
 * MQTT sessions: wills, persistent sessions (queued messages across
 * absences and restarts, expiry, re-sending the unacknowledged) and QoS 2
 * exactly once across reconnects and restarts.
 */
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { ManualClock } from '../../src/clock.js';
import { startServer, tempDir, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { ADMIN, RawMqtt, nextMessage, tcpUrl } from '../helpers/mqtt.js';

describe('MQTT wills with mqtt.js', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ mqttMaxKeepAliveSeconds: 120 });
  });
  after(() => s.stop());

  it('publishes the will when a client vanishes, not when it disconnects cleanly', async () => {
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await watcher.subscribeAsync('presence/+', { qos: 1 });
    const clean = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'clean-one', will: { topic: 'presence/clean-one', payload: Buffer.from('gone'), qos: 1, retain: false } });
    await clean.endAsync();
    const vanishing = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'vanisher', will: { topic: 'presence/vanisher', payload: Buffer.from('lost'), qos: 1, retain: false } });
    const got = nextMessage(watcher);
    vanishing.stream.destroy();
    const m = await got;
    assert.equal(m.topic, 'presence/vanisher');
    assert.equal(m.payload.toString(), 'lost');
    await watcher.endAsync();
  });
});

describe('MQTT persistent sessions', () => {
  it('keeps subscriptions and QoS 1/2 messages while the client is away (3.1.1 clean session 0)', async () => {
    const s = await startServer();
    const opts = { ...ADMIN, protocolVersion: 4 as const, clientId: 'device-7', clean: false };
    const first = await mqtt.connectAsync(tcpUrl(s), opts);
    await first.subscribeAsync('alerts/#', { qos: 2 });
    await first.endAsync();
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await pub.publishAsync('alerts/1', 'one', { qos: 1 });
    await pub.publishAsync('alerts/2', 'two', { qos: 2 });
    await pub.publishAsync('alerts/3', 'dropped: QoS 0 is not kept', { qos: 0 });
    await pub.publishAsync('alerts/4', 'four', { qos: 1 });
    const got: string[] = [];
    const back = mqtt.connect(tcpUrl(s), opts);
    // Order of PUBLISH packets as they arrive (mqtt.js emits a QoS 2 message only after PUBREL).
    back.on('packetreceive', (p) => {
      if (p.cmd === 'publish') got.push(p.payload.toString());
    });
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve) => back.once('connect', resolve));
    assert.equal(connack.sessionPresent, true);
    const deadline = Date.now() + 5000;
    while (got.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, ['one', 'two', 'four']);
    // live traffic still flows on the restored subscription
    await pub.publishAsync('alerts/5', 'five', { qos: 1 });
    while (got.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got[3], 'five');
    await back.endAsync();
    // a clean connect discards the session
    const clean = await mqtt.connectAsync(tcpUrl(s), { ...opts, clean: true });
    await clean.endAsync();
    await pub.publishAsync('alerts/6', 'six', { qos: 1 });
    const after = mqtt.connect(tcpUrl(s), opts);
    const ack2 = await new Promise<{ sessionPresent: boolean }>((resolve) => after.once('connect', resolve));
    assert.equal(ack2.sessionPresent, false);
    await after.endAsync();
    await pub.endAsync();
    await s.stop();
  });

  it('keeps a persistent session and its queued messages across a server restart, and expires it', async () => {
    const dir = tempDir();
    const clock = new ManualClock(Date.now());
    const a = await startServer({}, clock, dir);
    const opts = { ...ADMIN, protocolVersion: 5 as const, clientId: 'sensor-1', clean: false, properties: { sessionExpiryInterval: 600 } };
    const c = await mqtt.connectAsync(tcpUrl(a), opts);
    await c.subscribeAsync('cmd/sensor-1', { qos: 1 });
    await c.endAsync();
    const pub = await mqtt.connectAsync(tcpUrl(a), ADMIN);
    await pub.publishAsync('cmd/sensor-1', 'reboot', { qos: 1 });
    await pub.endAsync();
    await a.server.stop();

    const b = await startServer({}, clock, dir);
    const back = mqtt.connect(tcpUrl(b), opts);
    const got = nextMessage(back);
    const ack = await new Promise<{ sessionPresent: boolean }>((resolve) => back.once('connect', resolve));
    assert.equal(ack.sessionPresent, true);
    assert.equal((await got).payload.toString(), 'reboot');
    await back.endAsync();
    await b.server.stop();

    clock.advance(601_000);
    const c3 = await startServer({}, clock, dir);
    const late = mqtt.connect(tcpUrl(c3), opts);
    const ack3 = await new Promise<{ sessionPresent: boolean }>((resolve) => late.once('connect', resolve));
    assert.equal(ack3.sessionPresent, false, 'expired after 600 s away');
    await late.endAsync();
    await c3.stop();
  });

  it('sends an unacknowledged QoS 1 message again when the session resumes', async () => {
    const s = await startServer();
    const port = s.server.address('mqtt').port;
    const raw = async (clean: boolean): Promise<{ sock: ReturnType<typeof tcpConnect>; packets: mqttPacket.Packet[] }> => {
      const sock = tcpConnect(port, '127.0.0.1');
      const packets: mqttPacket.Packet[] = [];
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on('packet', (p) => packets.push(p));
      sock.on('data', (d) => parser.parse(d));
      await new Promise((r) => sock.once('connect', r));
      sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'raw-persist', clean, keepalive: 60, username: 'admin', password: Buffer.from(ADMIN_PASSWORD) }));
      return { sock, packets };
    };
    const waitFor = async (packets: mqttPacket.Packet[], cmd: string) => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const p = packets.find((x) => x.cmd === cmd);
        if (p) return p;
        if (Date.now() > deadline) throw new Error(`no ${cmd}; got ${packets.map((x) => x.cmd).join(',')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const one = await raw(false);
    await waitFor(one.packets, 'connack');
    one.sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'jobs/x', qos: 1 }] }));
    await waitFor(one.packets, 'suback');
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await pub.publishAsync('jobs/x', 'do it', { qos: 1 });
    const first = (await waitFor(one.packets, 'publish')) as mqttPacket.IPublishPacket;
    assert.equal(first.payload.toString(), 'do it');
    one.sock.destroy(); // no PUBACK
    await new Promise((r) => setTimeout(r, 50));
    const two = await raw(false);
    const ack = (await waitFor(two.packets, 'connack')) as mqttPacket.IConnackPacket;
    assert.equal(ack.sessionPresent, true);
    const again = (await waitFor(two.packets, 'publish')) as mqttPacket.IPublishPacket;
    assert.equal(again.payload.toString(), 'do it');
    two.sock.write(mqttPacket.generate({ cmd: 'puback', messageId: again.messageId! }));
    two.sock.destroy();
    await pub.endAsync();
    await s.stop();
  });
});

describe('MQTT QoS 2 exactly once across reconnects and restarts', () => {
  /** A raw MQTT 3.1.1 peer with a persistent session, to stop the handshake half-way. */
  async function peer(port: number, clientId: string) {
    const c = await RawMqtt.open(port, 4);
    const connack = await c.connect(clientId, 'admin', ADMIN_PASSWORD, { clean: false });
    return { sock: c.sock, packets: c.packets, send: (p: mqttPacket.Packet) => c.send(p), next: (cmd: string) => c.next(cmd), connack };
  }

  it('sends only PUBREL to a client that had sent PUBREC before the drop, even after a restart', async () => {
    const dir = tempDir();
    const a = await startServer({}, undefined, dir);
    const one = await peer(a.server.address('mqtt').port, 'qos2-out');
    one.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pay/#', qos: 2 }] });
    await one.next('suback');
    const pub = await mqtt.connectAsync(tcpUrl(a), ADMIN);
    await pub.publishAsync('pay/1', 'charge 10 EUR', { qos: 2 });
    const publish = (await one.next('publish')) as mqttPacket.IPublishPacket;
    one.send({ cmd: 'pubrec', messageId: publish.messageId! });
    await one.next('pubrel');
    one.sock.destroy(); // no PUBCOMP
    await pub.endAsync();
    await new Promise((r) => setTimeout(r, 50));
    await a.server.stop();

    const b = await startServer({}, undefined, dir);
    const two = await peer(b.server.address('mqtt').port, 'qos2-out');
    assert.equal(two.connack.sessionPresent, true);
    const rel = (await two.next('pubrel')) as mqttPacket.IPubrelPacket;
    assert.equal(rel.messageId, publish.messageId);
    two.send({ cmd: 'pubcomp', messageId: rel.messageId! });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(two.packets.filter((p) => p.cmd === 'publish').length, 0, 'not delivered a second time');
    two.sock.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const three = await peer(b.server.address('mqtt').port, 'qos2-out');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(three.packets.map((p) => p.cmd), [], 'nothing left once PUBCOMP came');
    three.sock.destroy();
    await b.stop();
  });

  it('does not deliver a re-sent QoS 2 PUBLISH twice when the client reconnects before PUBREL', async () => {
    const s = await startServer();
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const seen: string[] = [];
    watcher.on('message', (_t, p) => seen.push(p.toString()));
    await watcher.subscribeAsync('orders/#', { qos: 2 });
    const one = await peer(s.server.address('mqtt').port, 'qos2-in');
    one.send({ cmd: 'publish', topic: 'orders/1', payload: 'buy', qos: 2, messageId: 77, dup: false, retain: false });
    await one.next('pubrec');
    one.sock.destroy(); // no PUBREL
    await new Promise((r) => setTimeout(r, 50));
    const two = await peer(s.server.address('mqtt').port, 'qos2-in');
    two.send({ cmd: 'publish', topic: 'orders/1', payload: 'buy', qos: 2, messageId: 77, dup: true, retain: false });
    await two.next('pubrec');
    two.send({ cmd: 'pubrel', messageId: 77 });
    await two.next('pubcomp');
    await watcher.publishAsync('orders/sync', 'sync', { qos: 2 });
    const deadline = Date.now() + 5000;
    while (!seen.includes('sync') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen.filter((x) => x === 'buy'), ['buy']);
    two.sock.destroy();
    await watcher.endAsync();
    await s.stop();
  });
});
