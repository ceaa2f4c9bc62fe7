/**
 * Attacks on the publish fast paths (issue 16), against a real server on
 * loopback: MQTT PUBLISH decoded and handled at once by its own codec, and
 * STOMP SENDs carried out as soon as they are parsed. Each test sends what a
 * careless or hostile client might (malformed packets in a run, packets
 * behind a CONNECT still being checked, a DISCONNECT before more packets,
 * transactions mixed with plain SENDs) and checks that order, refusals,
 * v5 features and the counters hold.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { ADMIN_PASSWORD, api, login, startServer, type TestServer } from '../helpers/server.js';
import { ADMIN, RawMqtt, tcpUrl } from '../helpers/mqtt.js';
import { frameHeader, RawStomp, wsUrl } from '../helpers/stomp.js';

const gen = (p: mqttPacket.Packet, version: 3 | 4 | 5 = 4): Buffer => mqttPacket.generate(p, { protocolVersion: version });
const connectPacket = (clientId: string, password = ADMIN_PASSWORD, version: 4 | 5 = 4): Buffer =>
  gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId, clean: true, keepalive: 60, username: 'admin', password: Buffer.from(password) }, version);
const publishPacket = (topic: string, payload: string, qos: 0 | 1 | 2 = 0, messageId?: number, version: 4 | 5 = 4): Buffer =>
  gen({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(qos > 0 ? { messageId: messageId ?? 1 } : {}) }, version);

async function until(cond: () => boolean, what: string, ms = 4000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
}

/** A raw TCP socket to the MQTT port, with what it received and whether it closed. */
async function rawSocket(s: TestServer): Promise<{ sock: Socket; got: () => Buffer; closed: Promise<void> }> {
  const sock = connect(s.server.address('mqtt').port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  return { sock, got: () => Buffer.concat(chunks), closed };
}

async function metric(s: TestServer, name: string, protocol: string): Promise<number> {
  const text = await (await fetch(s.url + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{protocol="${protocol}"}`));
  return Number(line?.split(' ')[1] ?? NaN);
}

describe('MQTT publish fast path under attack', () => {
  let s: TestServer;
  let sub: mqtt.MqttClient;
  const got: string[] = [];

  before(async () => {
    s = await startServer();
    sub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'attack-sub' });
    sub.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
    await sub.subscribeAsync('atk/#', { qos: 1 });
  });
  after(async () => {
    await sub?.endAsync();
    await s?.stop();
  });

  it('v5 topic aliases towards a client: a message dropped for the client\'s Maximum Packet Size does not use up the alias of its topic', async () => {
    const raw = await RawMqtt.open(s.server.address('mqtt').port, 5);
    try {
      const ack = await raw.connect('alias-small', 'admin', ADMIN_PASSWORD, { properties: { topicAliasMaximum: 4, maximumPacketSize: 200 } });
      assert.equal(ack.reasonCode, 0);
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'atk/alias', qos: 0 }] });
      await raw.next('suback');
      const pub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'alias-pub' });
      try {
        pub.publish('atk/alias', 'x'.repeat(400), { qos: 0 }); // over the client's 200 bytes: never sent to it
        pub.publish('atk/alias', 'small', { qos: 0 });
        const p = (await raw.next('publish')) as mqttPacket.IPublishPacket;
        assert.equal(p.payload.toString(), 'small');
        // The first PUBLISH the client gets on this topic must name it: an alias it was never told is a protocol error.
        assert.equal(p.topic, 'atk/alias', `got topic "${p.topic}" with alias ${p.properties?.topicAlias}`);
      } finally {
        await pub.endAsync();
      }
    } finally {
      raw.sock.destroy();
    }
  });

  it('a run of packets: the valid PUBLISH before a malformed one is delivered, nothing after it, and the server goes on', async () => {
    const bad: [string, Buffer][] = [
      ['both QoS bits', Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])],
      ['topic cut short', Buffer.from([0x30, 0x03, 0x00, 0x05, 0x61])],
      ['QoS 1 without its packet id', Buffer.from([0x32, 0x03, 0x00, 0x01, 0x61])],
      ['QoS 1 with packet id 0', Buffer.from([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00])],
      ['empty topic', Buffer.from([0x30, 0x03, 0x00, 0x00, 0x62])],
      ['invalid UTF-8 topic', Buffer.from([0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x62])],
      ['wildcard topic', Buffer.from([0x30, 0x05, 0x00, 0x02, 0x61, 0x2b, 0x62])],
    ];
    for (const [i, [what, packet]] of bad.entries()) {
      const c = await rawSocket(s);
      const before = got.length;
      c.sock.write(Buffer.concat([connectPacket(`bad-${i}`), publishPacket('atk/bad', `before ${i}`), packet, publishPacket('atk/bad', `after ${i}`)]));
      await c.closed;
      await until(() => got.length > before, `${what}: the PUBLISH before it arrives`);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(got.slice(before), [`atk/bad before ${i}`], what);
    }
    // Still serving.
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'after-bad' });
    await c.publishAsync('atk/bad', 'alive', { qos: 1 });
    await until(() => got.at(-1) === 'atk/bad alive', 'the server still delivers');
    await c.endAsync();
  });

  it('a connected client\'s QoS 1 PUBLISH waiting for its commit is acknowledged before the malformed packet behind it ends the connection', async () => {
    for (const [what, packet] of [
      ['both QoS bits (publish-codec)', Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])],
      ['QoS 2 with packet id 0 (publish-codec)', Buffer.from([0x34, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00])],
      ['a SUBSCRIBE with wrong flags (mqtt-packet)', Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00])],
    ] as const) {
      const c = await rawSocket(s);
      c.sock.write(connectPacket('qos1-then-bad'));
      await until(() => c.got().length >= 4, 'CONNACK');
      assert.equal(c.got()[0], 0x20);
      const n = got.length;
      c.sock.write(Buffer.concat([publishPacket('atk/q1bad', 'acked', 1, 9), packet, publishPacket('atk/q1bad', 'after')]));
      await c.closed;
      const bytes = c.got().subarray(4);
      assert.deepEqual([...bytes], [0x40, 0x02, 0x00, 0x09], `${what}: the PUBACK of packet 9, then the close`);
      await until(() => got.length > n, 'delivered');
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(got.slice(n), ['atk/q1bad acked'], what);
    }
  });

  it('a QoS 1 PUBLISH cut short before its packet id, sent behind a CONNECT still being checked, ends the connection without a PUBACK missing its id', async () => {
    // Before CONNACK, packets are read by mqtt-packet, which takes the missing id as -1 and would write a 2-byte PUBACK.
    const c = await rawSocket(s);
    let closed = false;
    void c.closed.then(() => (closed = true));
    c.sock.write(Buffer.concat([connectPacket('cut-id'), Buffer.from([0x32, 0x03, 0x00, 0x01, 0x61])]));
    await until(() => closed, 'the connection is closed');
    assert.deepEqual([...c.got()], [0x20, 0x02, 0x00, 0x00], 'the CONNACK and nothing else');
  });

  it('PUBLISH sent with the CONNECT, in one write, waits for the CONNECT to be checked: delivered after a good one, never after a refused one', async () => {
    const good = await rawSocket(s);
    const n = got.length;
    good.sock.write(Buffer.concat([connectPacket('early-good'), publishPacket('atk/early', 'one'), publishPacket('atk/early', 'two', 1, 7)]));
    await until(() => got.length === n + 2, 'both arrive');
    assert.deepEqual(got.slice(n), ['atk/early one', 'atk/early two']);
    await until(() => good.got().length >= 4 + 4, 'CONNACK and PUBACK');
    const bytes = good.got();
    assert.equal(bytes[0], 0x20, 'CONNACK first');
    assert.equal(bytes[4], 0x40, 'then the PUBACK');
    good.sock.destroy();

    const bad = await rawSocket(s);
    bad.sock.write(Buffer.concat([connectPacket('early-bad', 'wrong-password'), publishPacket('atk/early', 'refused'), publishPacket('atk/early', 'refused', 1, 8)]));
    await bad.closed;
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(!got.includes('atk/early refused'), 'nothing a refused client sent is delivered');
    const answer = bad.got();
    assert.equal(answer[0], 0x20, 'a CONNACK');
    assert.notEqual(answer[3], 0, 'refusing');
    assert.equal(answer.length, 4, 'and nothing else (no PUBACK)');
  });

  it('nothing after a DISCONNECT in the same write is carried out', async () => {
    const c = await rawSocket(s);
    const n = got.length;
    c.sock.write(Buffer.concat([connectPacket('disc'), publishPacket('atk/disc', 'before'), gen({ cmd: 'disconnect' }), publishPacket('atk/disc', 'after')]));
    await c.closed;
    await until(() => got.length > n, 'the first arrives');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(got.slice(n), ['atk/disc before']);
  });

  it('MQTT 3.1 (protocol level 3): the fast path reads and writes its PUBLISH, QoS 0 to 2', async () => {
    const v3opts = { ...ADMIN, protocolId: 'MQIsdp' as const, protocolVersion: 3 as const };
    const a = await mqtt.connectAsync(tcpUrl(s), { ...v3opts, clientId: 'v3-a' });
    const b = await mqtt.connectAsync(tcpUrl(s), { ...v3opts, clientId: 'v3-b' });
    try {
      const seen: string[] = [];
      b.on('message', (t, p, packet) => seen.push(`${t} ${p.toString()} q${packet.qos}`));
      await b.subscribeAsync('atk/v3', { qos: 2 });
      for (const qos of [0, 1, 2] as const) await a.publishAsync('atk/v3', `m${qos}`, { qos });
      await until(() => seen.length === 3, 'three messages');
      assert.deepEqual(seen, ['atk/v3 m0 q0', 'atk/v3 m1 q1', 'atk/v3 m2 q2']);
    } finally {
      await Promise.all([a.endAsync(), b.endAsync()]);
    }
  });

  it('v5 on the fast path: inbound alias set then used, no-local, retain-as-published, subscription identifiers, expiry', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'v5-fast', protocolVersion: 5 });
    try {
      const seen: mqttPacket.IPublishPacket[] = [];
      c.on('message', (_t, _p, packet) => seen.push(packet));
      await c.subscribeAsync({ 'atk/v5/own': { qos: 0, nl: true } });
      await c.subscribeAsync({ 'atk/v5/rap': { qos: 1, rap: true } }, { properties: { subscriptionIdentifier: 42 } });
      c.publish('atk/v5/own', 'mine', { qos: 0 }); // no-local: not back to me
      c.publish('atk/v5/rap', 'kept', { qos: 1, retain: true });
      c.publish('atk/v5/rap', 'aliased', { qos: 0, properties: { topicAlias: 3 } });
      c.publish('', 'by alias', { qos: 0, properties: { topicAlias: 3 } });
      c.publish('atk/v5/rap', 'expiring', { qos: 1, properties: { messageExpiryInterval: 60 } });
      await until(() => seen.length === 4, `four messages (got ${seen.map((p) => p.payload.toString()).join(',')})`);
      assert.deepEqual(
        seen.map((p) => [p.topic, p.payload.toString(), p.retain, p.properties?.subscriptionIdentifier]),
        [
          ['atk/v5/rap', 'kept', true, 42],
          ['atk/v5/rap', 'aliased', false, 42],
          ['atk/v5/rap', 'by alias', false, 42],
          ['atk/v5/rap', 'expiring', false, 42],
        ],
      );
      assert.ok((seen[3]!.properties?.messageExpiryInterval ?? 0) > 0);
    } finally {
      await c.endAsync();
    }
  });

  it('counts messages in and out in /metrics as sent, on the fast path', async () => {
    const in0 = await metric(s, 'herald_messages_in_total', 'mqtt-tcp');
    const out0 = await metric(s, 'herald_messages_out_total', 'mqtt-tcp');
    const c = await rawSocket(s);
    const n = got.length;
    const run = [connectPacket('count')];
    for (let i = 0; i < 20; i++) run.push(publishPacket('atk/count', String(i)));
    c.sock.write(Buffer.concat(run));
    await until(() => got.length === n + 20, 'twenty arrive');
    assert.equal((await metric(s, 'herald_messages_in_total', 'mqtt-tcp')) - in0, 20);
    assert.equal((await metric(s, 'herald_messages_out_total', 'mqtt-tcp')) - out0, 20);
    c.sock.destroy();
  });
});

describe('STOMP publish fast path under attack', () => {
  let s: TestServer;
  const open: RawStomp[] = [];

  before(async () => {
    s = await startServer();
  });
  after(async () => {
    for (const c of open) c.close();
    await s?.stop();
  });

  async function client(version = '1.2'): Promise<RawStomp> {
    const c = await RawStomp.ws(wsUrl(s.url, '/stomp'));
    open.push(c);
    const f = await c.connect({ login: 'admin', passcode: ADMIN_PASSWORD }, version);
    assert.equal(f.command, 'CONNECTED', f.body.toString());
    return c;
  }
  async function subscribed(c: RawStomp, dest: string, id = 'sub'): Promise<void> {
    c.send(`SUBSCRIBE\nid:${id}\ndestination:${dest}\nreceipt:r-${id}\n\n\0`);
    assert.equal(frameHeader(await c.next('RECEIPT'), 'receipt-id'), `r-${id}`);
  }
  const send = (dest: string, body: string, extra = ''): string => `SEND\ndestination:${dest}\n${extra}content-length:${Buffer.byteLength(body)}\n\n${body}\0`;

  it('a SEND in a transaction waits for COMMIT, the plain SENDs around it do not, and ABORT drops its SENDs', async () => {
    const sub = await client();
    await subscribed(sub, '/topic/atk.tx');
    const pub = await client();
    pub.send(
      'BEGIN\ntransaction:t1\n\n\0' +
        send('/topic/atk.tx', 'in t1', 'transaction:t1\n') +
        send('/topic/atk.tx', 'plain 1') +
        'BEGIN\ntransaction:t2\n\n\0' +
        send('/topic/atk.tx', 'in t2', 'transaction:t2\n') +
        'ABORT\ntransaction:t2\n\n\0' +
        send('/topic/atk.tx', 'plain 2') +
        'COMMIT\ntransaction:t1\nreceipt:c1\n\n\0' +
        send('/topic/atk.tx', 'plain 3'),
    );
    assert.equal(frameHeader(await pub.next('RECEIPT'), 'receipt-id'), 'c1');
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) bodies.push((await sub.next('MESSAGE')).body.toString());
    assert.deepEqual(bodies, ['plain 1', 'plain 2', 'in t1', 'plain 3']);
  });

  it('a SEND naming an unknown transaction is an ERROR, and the SENDs after it are not carried out', async () => {
    const sub = await client();
    await subscribed(sub, '/topic/atk.txbad');
    const pub = await client();
    pub.send(send('/topic/atk.txbad', 'first') + send('/topic/atk.txbad', 'ghost', 'transaction:nope\nreceipt:g\n') + send('/topic/atk.txbad', 'after'));
    const err = await pub.next('ERROR');
    assert.equal(frameHeader(err, 'receipt-id'), 'g');
    assert.equal((await sub.next('MESSAGE')).body.toString(), 'first');
    await assert.rejects(sub.next('MESSAGE', 300));
  });

  it('bodies with NULs (content-length) and escaped headers survive the fast path, to 1.2 and 1.0 subscribers', async () => {
    const sub12 = await client('1.2');
    await subscribed(sub12, '/topic/atk.esc');
    const sub10 = await client('1.0');
    sub10.send('SUBSCRIBE\nid:s10\ndestination:/topic/atk.esc\nreceipt:r10\n\n\0');
    await sub10.next('RECEIPT');
    const pub = await client('1.2');
    const body = Buffer.from('a\0b\0\0c');
    pub.send(Buffer.concat([Buffer.from(`SEND\ndestination:/topic/atk.esc\nx-k\\cey:line\\none\\\\two\ncontent-length:${body.length}\n\n`), body, Buffer.from('\0')]));
    const m12 = await sub12.next('MESSAGE');
    assert.deepEqual(m12.body, body);
    assert.equal(frameHeader(m12, 'x-k:ey'), 'line\none\\two');
    const m10 = await sub10.next('MESSAGE');
    // 1.0 over WebSocket: a body with a NUL goes base64 (stomp.js 2.x would cut it at the NUL).
    assert.equal(frameHeader(m10, 'content-transfer-encoding'), 'base64');
    assert.deepEqual(Buffer.from(m10.body.toString(), 'base64'), body);
  });

  it('counts SENDs in and MESSAGEs out in /metrics', async () => {
    const sub = await client();
    await subscribed(sub, '/topic/atk.count');
    const pub = await client();
    const in0 = await metric(s, 'herald_messages_in_total', 'stomp-ws');
    const out0 = await metric(s, 'herald_messages_out_total', 'stomp-ws');
    let run = '';
    for (let i = 0; i < 10; i++) run += send('/topic/atk.count', String(i));
    pub.send(run);
    for (let i = 0; i < 10; i++) assert.equal((await sub.next('MESSAGE')).body.toString(), String(i));
    assert.equal((await metric(s, 'herald_messages_in_total', 'stomp-ws')) - in0, 10);
    assert.equal((await metric(s, 'herald_messages_out_total', 'stomp-ws')) - out0, 10);
  });
});

describe('STOMP SENDs held back by the publish rate', () => {
  let s: TestServer;
  const open: RawStomp[] = [];
  before(async () => {
    s = await startServer({ publishRatePerSecond: 1 });
  });
  after(async () => {
    for (const c of open) c.close();
    await s?.stop();
  });

  it('are not carried out once their session was ended (kicked) while they waited', async () => {
    const sub = await RawStomp.ws(wsUrl(s.url, '/stomp'));
    const pub = await RawStomp.ws(wsUrl(s.url, '/stomp'));
    open.push(sub, pub);
    assert.equal((await sub.connect({ login: 'admin', passcode: ADMIN_PASSWORD })).command, 'CONNECTED');
    sub.send('SUBSCRIBE\nid:s\ndestination:/topic/atk.rate\nreceipt:r\n\n\0');
    await sub.next('RECEIPT');
    const connected = await pub.connect({ login: 'admin', passcode: ADMIN_PASSWORD });
    const session = frameHeader(connected, 'session')!;
    pub.send('SEND\ndestination:/topic/atk.rate\n\nfirst\0SEND\ndestination:/topic/atk.rate\n\nheld\0');
    assert.equal((await sub.next('MESSAGE')).body.toString(), 'first');
    const token = await login(s.url);
    assert.equal((await api(s.url, 'POST', `/api/admin/sessions/${session}/disconnect`, { token })).status, 200);
    await pub.closedPromise;
    // The held SEND would have gone out about a second after the first.
    await assert.rejects(sub.next('MESSAGE', 2000), /timed out/);
  });
});

describe('MQTT payload memory', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(async () => {
    await s?.stop();
  });

  for (const version of [4, 5] as const) {
    it(`MQTT ${version === 4 ? '3.1.1' : '5'}: a retained message does not hold on to the whole chunk its PUBLISH came in (it is counted by its own size)`, async () => {
      const c = await rawSocket(s);
      c.sock.write(connectPacket(`mem-${version}`, ADMIN_PASSWORD, version));
      await until(() => c.got().length >= 4, 'CONNACK');
      const tiny = gen({ cmd: 'publish', topic: `atk/ret/${version}`, payload: Buffer.from('tiny'), qos: 0, retain: true, dup: false }, version);
      const withProps = gen({ cmd: 'publish', topic: `atk/ret/${version}p`, payload: Buffer.from('tiny'), qos: 0, retain: true, dup: false, properties: { contentType: 'text/plain' } }, version);
      const pad = publishPacket('atk/pad', 'p'.repeat(60_000), 0, undefined, version);
      c.sock.write(Buffer.concat(version === 5 ? [tiny, withProps, pad] : [tiny, pad]));
      const retained = (s.server as unknown as { mqtt: { retained: { get(t: string): { msg: { body: Buffer } } | undefined } } }).mqtt.retained;
      for (const topic of version === 5 ? [`atk/ret/${version}`, `atk/ret/${version}p`] : [`atk/ret/${version}`]) {
        await until(() => retained.get(topic) !== undefined, `${topic} retained`);
        const body = retained.get(topic)!.msg.body;
        assert.equal(body.toString(), 'tiny');
        assert.ok(body.buffer.byteLength <= 8192, `${topic}: 4 bytes of payload hold ${body.buffer.byteLength} bytes`);
      }
      c.sock.destroy();
    });
  }

  it('a retained will does not hold on to the chunk its CONNECT came in', async () => {
    const c = await rawSocket(s);
    const withWill = gen({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'mem-will', clean: true, keepalive: 60, username: 'admin', password: Buffer.from(ADMIN_PASSWORD),
      will: { topic: 'atk/will', payload: Buffer.from('gone'), qos: 0, retain: true },
    });
    c.sock.write(Buffer.concat([withWill, publishPacket('atk/pad', 'p'.repeat(60_000))]));
    await until(() => c.got().length >= 4, 'CONNACK');
    c.sock.destroy(); // no DISCONNECT: the will is published, and retained
    const retained = (s.server as unknown as { mqtt: { retained: { get(t: string): { msg: { body: Buffer } } | undefined } } }).mqtt.retained;
    await until(() => retained.get('atk/will') !== undefined, 'the will is retained');
    const body = retained.get('atk/will')!.msg.body;
    assert.equal(body.toString(), 'gone');
    assert.ok(body.buffer.byteLength <= 8192, `4 bytes of will hold ${body.buffer.byteLength} bytes`);
  });
});
