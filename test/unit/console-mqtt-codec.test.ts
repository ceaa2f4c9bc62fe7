/**
 * The console's own MQTT 5 codec (web/console/mqtt-codec.ts) against
 * mqtt-packet, the codec the server and mqtt.js use: what it writes,
 * mqtt-packet reads back the same; what mqtt-packet writes (as Herald
 * does), it reads; packets split or joined in any way come out whole.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { decodePacket, encodeAck, encodeConnect, encodeDisconnect, encodePingreq, encodePublish, encodeSubscribe, encodeUnsubscribe, PacketReader, reasonText } from '../../web/console/mqtt-codec.js';

/** What mqtt-packet makes of bytes (one packet). */
function parse(bytes: Uint8Array): Packet {
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const out: Packet[] = [];
  parser.on('packet', (p) => out.push(p));
  parser.on('error', (e) => assert.fail(e));
  parser.parse(Buffer.from(bytes));
  assert.equal(out.length, 1);
  return out[0]!;
}
const gen = (p: object): Uint8Array => new Uint8Array(mqttPacket.generate(p as Packet, { protocolVersion: 5 }));

describe('console MQTT 5 codec', () => {
  it('writes CONNECT, PUBLISH with v5 properties, acknowledgements, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT as mqtt-packet reads them', () => {
    const c = parse(encodeConnect({ clientId: 'console-1', username: 'console', password: 'tok', keepalive: 30, cleanStart: true, properties: { sessionExpiryInterval: 0 } })) as mqttPacket.IConnectPacket;
    assert.deepEqual([c.cmd, c.protocolVersion, c.clientId, c.username, c.password?.toString(), c.keepalive, c.clean], ['connect', 5, 'console-1', 'console', 'tok', 30, true]);
    const p = parse(
      encodePublish({
        topic: 'a/b',
        payload: new TextEncoder().encode('héllo'),
        qos: 2,
        retain: true,
        packetId: 7,
        properties: { contentType: 'text/plain', payloadFormatIndicator: 1, responseTopic: 'a/reply', correlationData: Uint8Array.of(1, 2, 3), messageExpiryInterval: 70000, userProperties: [['k', 'v'], ['k', 'w']] },
      }),
    ) as mqttPacket.IPublishPacket;
    assert.deepEqual([p.topic, p.qos, p.retain, p.messageId, p.payload.toString()], ['a/b', 2, true, 7, 'héllo']);
    assert.deepEqual({ ...p.properties, userProperties: { ...p.properties?.userProperties } }, { contentType: 'text/plain', payloadFormatIndicator: true, responseTopic: 'a/reply', correlationData: Buffer.from([1, 2, 3]), messageExpiryInterval: 70000, userProperties: { k: ['v', 'w'] } });
    const q0 = parse(encodePublish({ topic: 't', payload: new Uint8Array(200), qos: 0, retain: false })) as mqttPacket.IPublishPacket;
    assert.deepEqual([q0.qos, q0.payload.length, q0.messageId], [0, 200, undefined]);
    for (const cmd of ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const) {
      const a = parse(encodeAck(cmd, 300)) as mqttPacket.IPubackPacket;
      assert.deepEqual([a.cmd, a.messageId], [cmd, 300]);
    }
    const s = parse(encodeSubscribe(9, [['a/+', { qos: 1, noLocal: true }], ['$share/g/b/#', { qos: 2, retainAsPublished: true, retainHandling: 2 }]], { subscriptionIdentifier: [5] })) as mqttPacket.ISubscribePacket;
    assert.deepEqual(
      s.subscriptions.map((x) => [x.topic, x.qos, x.nl, x.rap, x.rh]),
      [['a/+', 1, true, false, 0], ['$share/g/b/#', 2, false, true, 2]],
    );
    assert.equal(s.properties?.subscriptionIdentifier, 5);
    const u = parse(encodeUnsubscribe(10, ['a/+', 'c'])) as mqttPacket.IUnsubscribePacket;
    assert.deepEqual([u.messageId, u.unsubscriptions], [10, ['a/+', 'c']]);
    assert.equal(parse(encodePingreq()).cmd, 'pingreq');
    assert.equal((parse(encodeDisconnect(0x04)) as mqttPacket.IDisconnectPacket).reasonCode, 4);
  });

  it('reads what a server writes: CONNACK, PUBLISH with properties, SUBACK, UNSUBACK, acknowledgements, PINGRESP, DISCONNECT', () => {
    const ca = decodePacket(gen({ cmd: 'connack', sessionPresent: true, reasonCode: 0, properties: { assignedClientIdentifier: 'x1', serverKeepAlive: 20, topicAliasMaximum: 10, userProperties: { a: 'b' } } }));
    assert.deepEqual(ca, { cmd: 'connack', sessionPresent: true, reasonCode: 0, properties: { assignedClientIdentifier: 'x1', serverKeepAlive: 20, topicAliasMaximum: 10, userProperties: [['a', 'b']] } });
    const pub = decodePacket(gen({ cmd: 'publish', topic: 'x/y', payload: Buffer.from([0, 255]), qos: 1, messageId: 4, retain: true, dup: false, properties: { subscriptionIdentifier: [3, 4], contentType: 'c', correlationData: Buffer.from('id') } }));
    assert.equal(pub.cmd, 'publish');
    if (pub.cmd !== 'publish') return;
    assert.deepEqual([pub.topic, [...pub.payload], pub.qos, pub.packetId, pub.retain, pub.properties.subscriptionIdentifier, pub.properties.contentType, new TextDecoder().decode(pub.properties.correlationData)], ['x/y', [0, 255], 1, 4, true, [3, 4], 'c', 'id']);
    assert.deepEqual(decodePacket(gen({ cmd: 'suback', messageId: 2, granted: [1, 0x87], properties: { reasonString: 'no' } })), { cmd: 'suback', packetId: 2, reasonCodes: [1, 0x87], properties: { reasonString: 'no' } });
    assert.deepEqual(decodePacket(gen({ cmd: 'unsuback', messageId: 3, granted: [0x11] })), { cmd: 'unsuback', packetId: 3, reasonCodes: [0x11], properties: {} });
    assert.deepEqual(decodePacket(gen({ cmd: 'puback', messageId: 5, reasonCode: 0x10 })), { cmd: 'puback', packetId: 5, reasonCode: 0x10, properties: {} });
    // The 2-byte short form Herald sends for a plain success.
    assert.deepEqual(decodePacket(Uint8Array.of(0x50, 2, 0, 6)), { cmd: 'pubrec', packetId: 6, reasonCode: 0, properties: {} });
    assert.deepEqual(decodePacket(gen({ cmd: 'pingresp' })), { cmd: 'pingresp' });
    assert.deepEqual(decodePacket(gen({ cmd: 'disconnect', reasonCode: 0x98, properties: { reasonString: 'kicked' } })), { cmd: 'disconnect', reasonCode: 0x98, properties: { reasonString: 'kicked' } });
    assert.equal(reasonText(0x98), 'administrative action (0x98)');
  });

  it('reassembles packets split across messages and separates packets joined in one', () => {
    const big = gen({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(20_000, 7), qos: 0, retain: false, dup: false });
    const small = gen({ cmd: 'pingresp' });
    const stream = new Uint8Array([...big, ...small, ...small]);
    for (const size of [1, 3, 127, 128, 5000, stream.length]) {
      const reader = new PacketReader();
      const got: string[] = [];
      for (let i = 0; i < stream.length; i += size) for (const p of reader.push(stream.subarray(i, i + size))) got.push(p.cmd === 'publish' ? `publish ${p.payload.length}` : p.cmd);
      assert.deepEqual(got, ['publish 20000', 'pingresp', 'pingresp'], `chunks of ${size}`);
    }
  });
});
