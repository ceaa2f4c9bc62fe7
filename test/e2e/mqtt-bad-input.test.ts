/**
 * MQTT bad input over raw TCP: packets real clients refuse to send, and the
 * CONNACK, DISCONNECT or close each one gets.
 */
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { ADMIN, RawMqtt, tcpUrl } from '../helpers/mqtt.js';

describe('MQTT bad input over raw TCP', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ mqttMaxPacketBytes: 4096 });
  });
  after(() => s.stop());

  /** Sends bytes, collects what comes back until the server closes. */
  function exchange(bytes: Buffer[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const sock = tcpConnect(s.server.address('mqtt').port, '127.0.0.1');
      const chunks: Buffer[] = [];
      sock.on('data', (d) => chunks.push(d));
      sock.on('close', () => resolve(Buffer.concat(chunks)));
      sock.on('error', reject);
      sock.on('connect', () => {
        for (const b of bytes) sock.write(b);
      });
      setTimeout(() => {
        sock.destroy();
        reject(new Error('server did not close the connection'));
      }, 5000).unref();
    });
  }
  const connect = (v: 4 | 5) =>
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v, clientId: 'raw', clean: true, keepalive: 30, username: 'admin', password: Buffer.from(ADMIN_PASSWORD) });
  function packets(bytes: Buffer, v: 4 | 5): mqttPacket.Packet[] {
    const out: mqttPacket.Packet[] = [];
    const p = mqttPacket.parser({ protocolVersion: v });
    p.on('packet', (x) => out.push(x));
    p.parse(bytes);
    return out;
  }

  it('closes when the first packet is not CONNECT', async () => {
    const back = await exchange([mqttPacket.generate({ cmd: 'pingreq' })]);
    assert.equal(back.length, 0);
  });

  it('answers an unknown protocol level with CONNACK 1, then closes', async () => {
    const bad = connect(4);
    bad[8] = 9; // protocol level byte
    const back = await exchange([bad]);
    assert.deepEqual([...back], [0x20, 0x02, 0x00, 0x01]);
  });

  it('refuses an empty client id without clean session with CONNACK 2 (3.1.1)', async () => {
    // Built by hand: mqtt-packet itself refuses to encode this.
    const str = (t: string) => Buffer.concat([Buffer.from([0, Buffer.byteLength(t)]), Buffer.from(t)]);
    const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc0, 0, 30]), str(''), str('admin'), str(ADMIN_PASSWORD)]);
    const p = Buffer.concat([Buffer.from([0x10, body.length]), body]);
    assert.deepEqual([...(await exchange([p]))], [0x20, 0x02, 0x00, 0x02]);
  });

  it('closes on a second CONNECT (v5: DISCONNECT 0x82)', async () => {
    const back = packets(await exchange([connect(5), connect(5)]), 5);
    assert.equal(back[0]!.cmd, 'connack');
    const d = back[1] as mqttPacket.IDisconnectPacket;
    assert.equal(d.cmd, 'disconnect');
    assert.equal(d.reasonCode, 0x82);
  });

  it('closes on a PUBLISH with a wildcard topic (v5: DISCONNECT 0x90)', async () => {
    const pub = mqttPacket.generate({ cmd: 'publish', topic: 'a/+/b', payload: 'x', qos: 0, dup: false, retain: false }, { protocolVersion: 5 });
    const back = packets(await exchange([connect(5), pub]), 5);
    assert.equal((back[1] as mqttPacket.IDisconnectPacket).reasonCode, 0x90);
  });

  it('closes on a packet over the maximum size (v5: DISCONNECT 0x95)', async () => {
    const pub = mqttPacket.generate({ cmd: 'publish', topic: 'a', payload: Buffer.alloc(10_000), qos: 0, dup: false, retain: false }, { protocolVersion: 5 });
    const back = packets(await exchange([connect(5), pub]), 5);
    assert.equal((back[1] as mqttPacket.IDisconnectPacket).reasonCode, 0x95);
  });

  it('closes on a wrong protocol name and on a PUBLISH topic that is not UTF-8', async () => {
    const bad = connect(4);
    bad[7] = 0x58; // "MQTX"
    assert.equal((await exchange([bad])).length, 0);
    const pub = mqttPacket.generate({ cmd: 'publish', topic: 'ab', payload: 'x', qos: 0, dup: false, retain: false }, { protocolVersion: 5 });
    pub[4] = 0xff; // first topic byte: not UTF-8
    const back = packets(await exchange([connect(5), pub]), 5);
    assert.equal((back[1] as mqttPacket.IDisconnectPacket).reasonCode, 0x90);
  });

  it('refuses an authentication method it does not support with CONNACK 0x8C (v5), then closes', async () => {
    const p = mqttPacket.generate(
      { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'am', clean: true, keepalive: 30, username: 'admin', password: Buffer.from(ADMIN_PASSWORD), properties: { authenticationMethod: 'SCRAM-SHA-1' } },
      { protocolVersion: 5 },
    );
    const back = packets(await exchange([p]), 5);
    assert.equal(back.length, 1);
    const ack = back[0] as mqttPacket.IConnackPacket;
    assert.equal(ack.reasonCode, 0x8c);
    assert.match(ack.properties?.reasonString ?? '', /authentication method "SCRAM-SHA-1" is not supported/);
  });

  it('leaves reason strings out of PUBACK when the client asks for no problem information (v5)', async () => {
    const port = s.server.address('mqtt').port;
    const refusedPuback = async (c: RawMqtt): Promise<mqttPacket.IPubackPacket> => {
      c.send({ cmd: 'publish', topic: '$SYS/x', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
      return (await c.next('puback')) as mqttPacket.IPubackPacket;
    };
    const quiet = await RawMqtt.open(port, 5);
    assert.equal((await quiet.connect('quiet', 'admin', ADMIN_PASSWORD, { properties: { requestProblemInformation: false } })).reasonCode, 0);
    const q = await refusedPuback(quiet);
    assert.equal(q.reasonCode, 0x87);
    assert.equal(q.properties?.reasonString, undefined);
    const chatty = await RawMqtt.open(port, 5);
    await chatty.connect('chatty', 'admin', ADMIN_PASSWORD);
    const c = await refusedPuback(chatty);
    assert.equal(c.reasonCode, 0x87);
    assert.match(c.properties?.reasonString ?? '', /reserved for the server/);
    quiet.sock.destroy();
    chatty.sock.destroy();
  });

  it('closes on no-local set on a shared subscription (v5: DISCONNECT 0x82)', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect('share-nl', 'admin', ADMIN_PASSWORD);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/news', qos: 1, nl: true, rap: false, rh: 0 }] });
    const d = (await c.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(d.reasonCode, 0x82);
    assert.match(d.properties?.reasonString ?? '', /no local cannot be set on a shared subscription/);
    await c.closed;
    assert.equal(c.packets.filter((x) => x.cmd === 'suback').length, 0);
  });

  it('closes on more unreleased QoS 2 messages than its receive maximum (v5: DISCONNECT 0x93)', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    const ack = await c.connect('recv-max', 'admin', ADMIN_PASSWORD);
    const max = ack.properties!.receiveMaximum!;
    for (let id = 1; id <= max; id++) c.send({ cmd: 'publish', topic: 'flood', payload: Buffer.from('x'), qos: 2, messageId: id, retain: false, dup: false });
    for (let id = 1; id <= max; id++) await c.next('pubrec');
    // Releasing one makes room for one more.
    c.send({ cmd: 'pubrel', messageId: 1 });
    await c.next('pubcomp');
    c.send({ cmd: 'publish', topic: 'flood', payload: Buffer.from('x'), qos: 2, messageId: 1, retain: false, dup: false });
    await c.next('pubrec');
    c.send({ cmd: 'publish', topic: 'flood', payload: Buffer.from('x'), qos: 2, messageId: max + 1, retain: false, dup: false });
    const d = (await c.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(d.reasonCode, 0x93);
    await c.closed;
  });

  it('sends v5 acknowledgements of success in the 2-byte short form', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect('short-acks', 'admin', ADMIN_PASSWORD);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'short/#', qos: 2 }] });
    await c.next('suback');
    c.send({ cmd: 'publish', topic: 'short/one', payload: Buffer.from('1'), qos: 1, messageId: 10, retain: false, dup: false });
    c.send({ cmd: 'publish', topic: 'short/two', payload: Buffer.from('2'), qos: 2, messageId: 11, retain: false, dup: false });
    const puback = await c.next('puback');
    const pubrec = await c.next('pubrec');
    c.send({ cmd: 'pubrel', messageId: 11 });
    const pubcomp = await c.next('pubcomp');
    // Its own QoS 2 message comes back (no no-local): the server's PUBREL follows our PUBREC.
    const msgs: mqttPacket.IPublishPacket[] = [];
    while (msgs.length < 2) msgs.push((await c.next('publish')) as mqttPacket.IPublishPacket);
    const two = msgs.find((m) => m.qos === 2)!;
    c.send({ cmd: 'pubrec', messageId: two.messageId! });
    const pubrel = await c.next('pubrel');
    for (const m of msgs.filter((x) => x.qos === 1)) c.send({ cmd: 'puback', messageId: m.messageId! });
    c.send({ cmd: 'pubcomp', messageId: two.messageId! });
    assert.deepEqual([puback, pubrec, pubcomp, pubrel].map((p) => [p.cmd, p.length]), [['puback', 2], ['pubrec', 2], ['pubcomp', 2], ['pubrel', 2]]);
    c.sock.destroy();
  });

  it('answers PUBREL for an unknown packet id with PUBCOMP 0x92 (v5)', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect('pubrel-test', 'admin', ADMIN_PASSWORD);
    c.send({ cmd: 'pubrel', messageId: 999 });
    assert.equal(((await c.next('pubcomp')) as mqttPacket.IPubcompPacket).reasonCode, 0x92);
    c.sock.destroy();
  });

  it('closes on reserved flags in CONNECT and on garbage, and counts it', async () => {
    const bad = connect(4);
    bad[9] = bad[9]! | 0x01; // reserved connect flag
    assert.equal((await exchange([bad])).length, 0);
    assert.equal((await exchange([connect(4), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])])).subarray(4).length, 0);
    const metrics = await (await fetch(s.url + '/metrics')).text();
    assert.match(metrics, /herald_protocol_errors_total\{protocol="mqtt-tcp",reason="malformed"\} [1-9]/);
    // and everyone else is fine
    const c = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await c.endAsync();
  });
  it('reads each connection by its own protocol version, and one connection\'s garbage leaves the others\' packets whole', async () => {
    // Every connection's bytes go through one parser (whole packets, each connection's CONNECT lent for the call).
    const v5 = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'mixed-v5' });
    const v4 = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 4, clientId: 'mixed-v4' });
    try {
      await v4.subscribeAsync('mixed/+', { qos: 1 });
      await v5.subscribeAsync('mixed/+', { qos: 1 });
      const got4: string[] = [];
      const got5: { payload: string; contentType?: string }[] = [];
      v4.on('message', (_t, p) => got4.push(p.toString()));
      v5.on('message', (_t, p, packet) => got5.push({ payload: p.toString(), ...(packet.properties?.contentType ? { contentType: packet.properties.contentType } : {}) }));
      for (let i = 0; i < 20; i++) {
        // Connections sending garbage in between, closed for it: a CONNECT that fails half-way
        // (an unknown protocol level) and a packet with reserved flags.
        if (i % 5 === 0) {
          const bad = connect(4);
          bad[8] = 9;
          await exchange([bad]);
          await exchange([connect(4), Buffer.from([0xf3, 0x00])]);
        }
        await v5.publishAsync('mixed/a', `five-${i}`, { qos: 1, properties: { contentType: 'text/plain', userProperties: { n: String(i) } } });
        await v4.publishAsync('mixed/b', `four-${i}`, { qos: 1 });
      }
      const until = Date.now() + 5000;
      while ((got4.length < 40 || got5.length < 40) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      assert.equal(got4.length, 40);
      assert.equal(got5.length, 40);
      assert.deepEqual(got5.filter((m) => m.payload.startsWith('five-')).map((m) => m.contentType), Array(20).fill('text/plain'), 'v5 properties read as v5');
    } finally {
      await v5.endAsync();
      await v4.endAsync();
    }
  });
});
