/**
 * MQTT 5 features: properties passed on (response topic, correlation data,
 * user properties, payload format, message expiry), topic aliases,
 * subscription options, flow control, keep-alive and will delay.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { ManualClock } from '../../src/clock.js';
import { startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { ADMIN, RawMqtt, nextMessage, tcpUrl } from '../helpers/mqtt.js';

describe('MQTT 5 properties', () => {
  it('passes response topic, correlation data, user properties and the payload format indicator, honours retain-as-published and message expiry', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startServer({}, clock);
    const responder = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await responder.subscribeAsync('rpc/time', { qos: 1 });
    const requester = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const req = nextMessage(responder, 'rpc/time');
    await requester.publishAsync('rpc/time', 'now?', {
      qos: 1,
      properties: { responseTopic: 'rpc/replies/42', correlationData: Buffer.from([1, 2, 3]), userProperties: { trace: 'abc' }, payloadFormatIndicator: true },
    });
    const m = await req;
    assert.equal(m.packet.properties?.payloadFormatIndicator, true, 'sent unaltered [MQTT-3.3.2-4]');
    assert.equal(m.packet.properties?.responseTopic, 'rpc/replies/42');
    assert.deepEqual([...(m.packet.properties?.correlationData ?? [])], [1, 2, 3]);
    assert.deepEqual({ ...m.packet.properties?.userProperties }, { trace: 'abc' });

    // retain-as-published keeps the publisher's retain flag on live delivery; plain subscriptions see 0
    const rap = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await rap.subscribeAsync('state/#', { qos: 1, rap: true });
    const plain = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await plain.subscribeAsync('state/#', { qos: 1 });
    const r1 = nextMessage(rap, 'state/lamp');
    const r2 = nextMessage(plain, 'state/lamp');
    await requester.publishAsync('state/lamp', 'on', { qos: 1, retain: true, properties: { payloadFormatIndicator: true } });
    assert.equal((await r1).packet.retain, true);
    assert.equal((await r2).packet.retain, false);
    // ...and the retained copy keeps the indicator for a later subscriber.
    const late = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const r3 = nextMessage(late, 'state/lamp');
    await late.subscribeAsync('state/lamp', { qos: 1 });
    assert.equal((await r3).packet.properties?.payloadFormatIndicator, true);
    await late.endAsync();

    // an expired message is not delivered to a session that comes back later
    const opts = { ...ADMIN, protocolVersion: 5 as const, clientId: 'sleepy', clean: false, properties: { sessionExpiryInterval: 3600 } };
    const sleepy = await mqtt.connectAsync(tcpUrl(s), opts);
    await sleepy.subscribeAsync('alarms/#', { qos: 1 });
    await sleepy.endAsync();
    await requester.publishAsync('alarms/short', 'short-lived', { qos: 1, properties: { messageExpiryInterval: 5 } });
    await requester.publishAsync('alarms/long', 'long-lived', { qos: 1, properties: { messageExpiryInterval: 600, payloadFormatIndicator: true } });
    clock.advance(10_000);
    const got: { payload: string; expiry: number | undefined; pfi: boolean | undefined }[] = [];
    const back = mqtt.connect(tcpUrl(s), opts);
    back.on('message', (_t, p, pk) => got.push({ payload: p.toString(), expiry: pk.properties?.messageExpiryInterval, pfi: pk.properties?.payloadFormatIndicator }));
    const deadline = Date.now() + 5000;
    while (got.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await requester.publishAsync('public/sync', 'x', { qos: 1 });
    assert.deepEqual(got.map((g) => g.payload), ['long-lived']);
    assert.ok(got[0]!.expiry! <= 590 && got[0]!.expiry! > 0, `remaining expiry ${got[0]!.expiry}`);
    assert.equal(got[0]!.pfi, true, 'kept with the stored session message');
    for (const c of [responder, requester, rap, plain, back]) await c.endAsync();
    await s.stop();
  });
});

describe('MQTT 5 topic aliases', () => {
  it('uses topic aliases both ways', async () => {
    const s = await startServer();
    const sub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, properties: { topicAliasMaximum: 5 } });
    const raw: mqttPacket.IPublishPacket[] = [];
    sub.on('packetreceive', (p) => {
      if (p.cmd === 'publish') raw.push(p);
    });
    const got: string[] = [];
    sub.on('message', (t, p) => got.push(`${t}=${p.toString()}`));
    await sub.subscribeAsync('telemetry/#', { qos: 0 });
    const pub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    // the publisher sets alias 3 once, then publishes with the alias alone
    await pub.publishAsync('telemetry/engine/temp', '90', { qos: 1, properties: { topicAlias: 3 } });
    await pub.publishAsync('', '91', { qos: 1, properties: { topicAlias: 3 } });
    const deadline = Date.now() + 5000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, ['telemetry/engine/temp=90', 'telemetry/engine/temp=91']);
    assert.equal(raw[0]!.topic, 'telemetry/engine/temp');
    assert.equal(raw[1]!.topic, '', 'the second delivery carries only the alias');
    assert.equal(raw[1]!.properties?.topicAlias, raw[0]!.properties?.topicAlias);
    // an alias outside the announced range ends the connection with 0x94
    // (mqtt.js refuses to send such an alias itself, so this one is raw)
    const abuser = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await abuser.connect('alias-abuser', 'admin', ADMIN_PASSWORD);
    abuser.send({ cmd: 'publish', topic: 'x', payload: 'y', qos: 0, dup: false, retain: false, properties: { topicAlias: 1000 } });
    assert.equal(((await abuser.next('disconnect')) as mqttPacket.IDisconnectPacket).reasonCode, 0x94);
    await abuser.closed;
    await sub.endAsync();
    await pub.endAsync();
    await s.stop();
  });
});

describe('MQTT 5 subscription options, flow control, keep-alive and will delay', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.stop());

  /** Raw v5 client: connect with the given properties and keep-alive, collect packets. */
  async function raw5(clientId: string, keepalive: number, properties: mqttPacket.IConnectPacket['properties'] = {}) {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect(clientId, 'admin', ADMIN_PASSWORD, { keepalive, properties });
    const until = async (cond: () => boolean, what: string) => {
      const deadline = Date.now() + 5000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`no ${what}; got ${c.packets.map((p) => p.cmd).join(',')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    return { sock: c.sock, got: c.packets, send: (p: mqttPacket.Packet) => c.send(p), until, closed: c.closed };
  }

  it('honours no-local, subscription identifiers and retain handling', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const other = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const mine: string[] = [];
    c.on('message', (t, _p, pk) => mine.push(`${t}#${String(pk.properties?.subscriptionIdentifier ?? '')}`));
    await c.subscribeAsync('nl/#', { qos: 1, nl: true });
    await c.subscribeAsync('sid/#', { qos: 1, properties: { subscriptionIdentifier: 7 } });
    const theirs = nextMessage(other, 'nl/x');
    await other.subscribeAsync('nl/#', { qos: 1 });
    await c.publishAsync('nl/x', 'own', { qos: 1 });
    await theirs;
    await other.publishAsync('sid/y', 'tagged', { qos: 1 });
    const deadline = Date.now() + 5000;
    while (mine.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(mine, ['sid/y#7'], 'no own message on the no-local subscription; the identifier on the other');

    await other.publishAsync('rh/a', 'kept', { qos: 1, retain: true });
    const seen: string[] = [];
    const r = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    r.on('message', (t, p, pk) => seen.push(`${t}:${p.toString()}:${pk.retain}`));
    await r.subscribeAsync('rh/#', { qos: 1, rh: 2 }); // never
    await r.subscribeAsync('rh/+', { qos: 1, rh: 1 }); // new subscription: yes
    await r.subscribeAsync('rh/+', { qos: 1, rh: 1 }); // existing: no
    await r.publishAsync('public/sync', 'x', { qos: 1 });
    while (seen.length < 1 && Date.now() < deadline) await new Promise((r2) => setTimeout(r2, 10));
    assert.deepEqual(seen, ['rh/a:kept:true']);
    for (const x of [c, other, r]) await x.endAsync();
  });

  it('sends no more QoS 1 messages than the client\'s receive maximum before PUBACKs', async () => {
    const c = await raw5('flow', 60, { receiveMaximum: 2 });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flow/#', qos: 1 }] });
    await c.until(() => c.got.some((p) => p.cmd === 'suback'), 'suback');
    const pub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    for (let i = 0; i < 5; i++) await pub.publishAsync('flow/x', String(i), { qos: 1 });
    const publishes = () => c.got.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish');
    await c.until(() => publishes().length === 2, 'two publishes');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(publishes().length, 2, 'the window holds the rest back');
    for (const p of publishes()) c.send({ cmd: 'puback', messageId: p.messageId! });
    await c.until(() => publishes().length === 4, 'two more after the acks');
    assert.deepEqual(publishes().map((p) => p.payload.toString()), ['0', '1', '2', '3']);
    c.sock.destroy();
    await pub.endAsync();
  });

  it('closes a client silent for 1.5 times its keep-alive (v5: DISCONNECT 0x8D)', async () => {
    const c = await raw5('sleeper', 1);
    const started = Date.now();
    await c.closed;
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 1400, `closed after ${elapsed} ms, not before 1.5 × 1 s`);
    assert.equal((c.got.find((p) => p.cmd === 'disconnect') as mqttPacket.IDisconnectPacket | undefined)?.reasonCode, 0x8d);
  });

  it('delays the will, and a client back in time cancels it', async () => {
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const wills: string[] = [];
    watcher.on('message', (t, p) => wills.push(`${t}:${p.toString()}`));
    await watcher.subscribeAsync('lastwill/#', { qos: 1 });
    const will = { topic: 'lastwill/d1', payload: Buffer.from('gone'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } };
    // The session outlives the connection (expiry 10 s), so the will waits for its own delay [MQTT-3.1.3.2.2].
    const sessionKept = { sessionExpiryInterval: 10 };
    const first = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'd1', will, properties: sessionKept });
    first.stream.destroy();
    const back = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'd1', will, properties: sessionKept });
    await new Promise((r) => setTimeout(r, 1300));
    assert.deepEqual(wills, [], 'the client came back within the delay');
    const started = Date.now();
    back.stream.destroy();
    const deadline = Date.now() + 5000;
    while (wills.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(wills, ['lastwill/d1:gone']);
    assert.ok(Date.now() - started >= 900, 'sent after the delay, not at once');
    await watcher.endAsync();
  });
});
