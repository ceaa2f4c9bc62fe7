/**
 * The PUBLISH codec of the hot path (publish-codec.ts) against mqtt-packet,
 * which reads and writes every other packet: for any topic, payload, QoS,
 * flags, packet id and protocol version, our encoding is byte for byte
 * mqtt-packet's, and our decoding of mqtt-packet's bytes is what
 * mqtt-packet reads. Malformed PUBLISH packets are refused with
 * mqtt-packet's own words.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import { decodePublish, encodePublish, isPublish, ownPayload, PublishDecodeError } from '../../src/protocols/mqtt/publish-codec.js';

function libraryParse(buf: Buffer, version: number): { packet?: Packet; error?: Error } {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const out: { packet?: Packet; error?: Error } = {};
  parser.on('packet', (p: Packet) => (out.packet = p));
  parser.on('error', (e: Error) => (out.error = e));
  parser.parse(buf);
  return out;
}

const publishes = fc.record({
  topic: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 })),
  payload: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
  retain: fc.boolean(),
  dup: fc.boolean(),
  messageId: fc.integer({ min: 1, max: 65535 }),
  version: fc.constantFrom(3, 4, 5),
});

describe('the PUBLISH codec', () => {
  it('encodes exactly as mqtt-packet does', () => {
    fc.assert(
      fc.property(publishes, ({ topic, payload, qos, retain, dup, messageId, version }) => {
        const ours = encodePublish(topic, payload, qos, retain, dup, qos > 0 ? messageId : undefined, version);
        const theirs = mqttPacket.generate({ cmd: 'publish', topic, payload, qos, retain, dup, ...(qos > 0 ? { messageId } : {}) }, { protocolVersion: version });
        assert.deepEqual(ours, theirs);
      }),
      { numRuns: 500 },
    );
  });

  it('encodes lengths across every Remaining Length size', () => {
    for (const size of [0, 120, 127, 128, 16_380, 16_384, 70_000, 2_097_200]) {
      const payload = Buffer.alloc(size, 7);
      const ours = encodePublish('a/b', payload, 1, false, false, 9, 4);
      assert.deepEqual(ours, mqttPacket.generate({ cmd: 'publish', topic: 'a/b', payload, qos: 1, retain: false, dup: false, messageId: 9 }, { protocolVersion: 4 }));
    }
  });

  it('decodes what mqtt-packet decodes', () => {
    fc.assert(
      fc.property(publishes, ({ topic, payload, qos, retain, dup, messageId, version }) => {
        const bytes = mqttPacket.generate({ cmd: 'publish', topic, payload, qos, retain, dup, ...(qos > 0 ? { messageId } : {}) }, { protocolVersion: version });
        assert.ok(isPublish(bytes, 0));
        const ours = decodePublish(bytes, 0, bytes.length, version)!;
        const theirs = libraryParse(bytes, version).packet as IPublishPacket;
        assert.equal(ours.topic, theirs.topic);
        assert.deepEqual(Buffer.from(ours.payload as Buffer), Buffer.from(theirs.payload as Buffer));
        assert.equal(ours.qos, theirs.qos);
        assert.equal(ours.retain, theirs.retain);
        assert.equal(ours.dup, theirs.dup);
        assert.equal(ours.length, theirs.length);
        assert.equal(ours.messageId, qos > 0 ? theirs.messageId : undefined);
      }),
      { numRuns: 500 },
    );
  });

  it('reads a packet inside a larger run without looking past its end', () => {
    const one = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.from('first'), qos: 0, retain: false, dup: false });
    const two = mqttPacket.generate({ cmd: 'publish', topic: 'u/v', payload: Buffer.from('second'), qos: 1, retain: true, dup: false, messageId: 3 });
    const run = Buffer.concat([one, two]);
    const a = decodePublish(run, 0, one.length, 4)!;
    const b = decodePublish(run, one.length, run.length, 4)!;
    assert.equal(a.payload.toString(), 'first');
    assert.deepEqual([b.topic, b.payload.toString(), b.messageId, b.retain], ['u/v', 'second', 3, true]);
  });

  it('leaves a v5 PUBLISH with properties to mqtt-packet', () => {
    const bytes = mqttPacket.generate({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { contentType: 'text/plain' } }, { protocolVersion: 5 });
    assert.equal(decodePublish(bytes, 0, bytes.length, 5), undefined);
    const bare = mqttPacket.generate({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, { protocolVersion: 5 });
    assert.equal(decodePublish(bare, 0, bare.length, 5)!.payload.toString(), 'x');
  });

  it('refuses malformed packets in mqtt-packet\'s words', () => {
    const cases: [string, Buffer, number][] = [
      ['both QoS bits', Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]), 4],
      ['topic longer than the packet', Buffer.from([0x30, 0x03, 0x00, 0x09, 0x61]), 4],
      ['no topic length', Buffer.from([0x30, 0x01, 0x00]), 4],
    ];
    for (const [what, bytes, version] of cases) {
      const theirs = libraryParse(bytes, version).error;
      assert.ok(theirs, `mqtt-packet refuses: ${what}`);
      assert.throws(() => decodePublish(bytes, 0, bytes.length, version), (err: unknown) => err instanceof PublishDecodeError && err.message === theirs.message, what);
    }
  });

  it('refuses a QoS 1 PUBLISH cut short before its packet id (mqtt-packet reads the id as -1 there)', () => {
    const bytes = Buffer.from([0x32, 0x04, 0x00, 0x01, 0x61, 0x00]);
    assert.equal((libraryParse(bytes, 4).packet as IPublishPacket).messageId, -1);
    assert.throws(() => decodePublish(bytes, 0, bytes.length, 4), /Cannot parse messageId/);
  });

  it('turns invalid UTF-8 in a topic into U+FFFD, as mqtt-packet does (the handler then refuses the topic)', () => {
    const bytes = Buffer.from([0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x78]);
    assert.equal(decodePublish(bytes, 0, bytes.length, 4)!.topic, '\uFFFD(');
    assert.equal((libraryParse(bytes, 4).packet as IPublishPacket).topic, '\uFFFD(');
  });

  it('keeps a payload as a view only when it is at least half of the memory under it; copies a smaller one', () => {
    const read = Buffer.alloc(64 * 1024, 7); // a socket read: its own 64 KiB
    const small = ownPayload(read, 100, 110);
    assert.notEqual(small.buffer, read.buffer, 'a 10-byte payload does not keep 64 KiB alive');
    assert.deepEqual([...small], Array(10).fill(7));
    const large = ownPayload(read, 10, 40_000);
    assert.equal(large.buffer, read.buffer, 'a payload that is most of the read is not copied');
    assert.equal(large.byteOffset, read.byteOffset + 10);
    assert.equal(large.length, 39_990);
    const half = ownPayload(read, 0, 32 * 1024);
    assert.equal(half.buffer, read.buffer);
    const pooled = Buffer.allocUnsafe(2048).fill(1); // from Node's 8 KiB pool
    const fromPool = ownPayload(pooled, 0, 2048);
    pooled.fill(9);
    assert.equal(fromPool[0], 1, '2 KiB of an 8 KiB pool slab is copied, not a view of it');
    assert.equal(ownPayload(read, 5, 5).length, 0);
  });
});
