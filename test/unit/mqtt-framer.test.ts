/**
 * The MQTT framer: whole packets out, however the bytes are split, in time
 * linear in the bytes received; a malformed or oversized fixed header is
 * refused as soon as it is read.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { MqttFrameError, MqttFramer } from '../../src/protocols/mqtt/framer.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Hand-written packets (MQTT 3.1.1), with their fixed headers first. */
const CONNECT = hex('10 10 0004 4d515454 04 02 003c 0004 74657374'); // client id "test", clean session, keep-alive 60
const PUBLISH = hex('30 07 0003 612f62 6869'); // QoS 0 "a/b" payload "hi"
const PUBLISH_QOS1 = hex('32 07 0001 78 0007 6f6b'); // QoS 1 "x", packet id 7, payload "ok"
const SUBSCRIBE = hex('82 08 0001 0003 612f23 01'); // packet id 1, "a/#" QoS 1
const PINGREQ = hex('c0 00');
const DISCONNECT = hex('e0 00');

/** A QoS 0 PUBLISH whose payload needs a Remaining Length of `lengthBytes` bytes. */
function bigPublish(payloadBytes: number): Buffer {
  return mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(payloadBytes, 0x5a), qos: 0, dup: false, retain: false });
}

/** Feeds the chunks; returns the runs emitted. */
function run(framer: MqttFramer, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) framer.feed(c, (b) => out.push(b));
  return out;
}

/** Decodes one run with a fresh parser and asserts it held whole packets only. */
function decode(run: Buffer): mqttPacket.Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: mqttPacket.Packet[] = [];
  parser.on('packet', (p) => packets.push(p));
  parser.on('error', (e) => assert.fail(e));
  const left = parser.parse(run);
  assert.equal(left, 0, 'a run holds whole packets only');
  assert.ok(packets.length > 0);
  return packets;
}

function splitAt(buf: Buffer, ...cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    out.push(buf.subarray(from, c));
    from = c;
  }
  out.push(buf.subarray(from));
  return out;
}

describe('MqttFramer', () => {
  const stream = Buffer.concat([CONNECT, PUBLISH, PUBLISH_QOS1, SUBSCRIBE, bigPublish(300), PINGREQ, bigPublish(20_000), DISCONNECT]);
  const expected = ['connect', 'publish', 'publish', 'subscribe', 'publish', 'pingreq', 'publish', 'disconnect'];

  it('decodes the hand-written packets as mqtt-packet does', () => {
    const runs = run(new MqttFramer(1 << 20), [Buffer.concat([CONNECT, PUBLISH, PUBLISH_QOS1, SUBSCRIBE, PINGREQ])]);
    assert.equal(runs.length, 1, 'whole packets in one chunk go out as one run');
    const ps = decode(runs[0]!);
    assert.deepEqual(ps.map((p) => p.cmd), ['connect', 'publish', 'publish', 'subscribe', 'pingreq']);
    assert.equal((ps[0] as mqttPacket.IConnectPacket).clientId, 'test');
    assert.equal((ps[1] as mqttPacket.IPublishPacket).payload.toString(), 'hi');
    assert.equal((ps[2] as mqttPacket.IPublishPacket).messageId, 7);
  });

  it('emits the same packets wherever the stream is cut once', () => {
    for (let i = 0; i <= stream.length; i++) {
      const runs = run(new MqttFramer(1 << 20), splitAt(stream, i));
      assert.deepEqual(Buffer.concat(runs), stream, `cut at ${i}`);
      assert.deepEqual(runs.flatMap(decode).map((p) => p.cmd), expected, `cut at ${i}`);
    }
  });

  it('emits the same packets wherever the small packets are cut twice', () => {
    const small = Buffer.concat([CONNECT, PUBLISH, PINGREQ, PUBLISH_QOS1, SUBSCRIBE, bigPublish(130)]);
    for (let i = 0; i <= small.length; i++) {
      for (let j = i; j <= small.length; j++) {
        const runs = run(new MqttFramer(1 << 20), splitAt(small, i, j));
        assert.deepEqual(Buffer.concat(runs), small, `cuts at ${i} and ${j}`);
        assert.equal(runs.flatMap(decode).length, 6);
      }
    }
  });

  it('emits the same packets when every byte comes alone', () => {
    const chunks = [...stream].map((b) => Buffer.from([b]));
    const runs = run(new MqttFramer(1 << 20), chunks);
    assert.equal(runs.length, expected.length, 'one run per packet');
    assert.deepEqual(runs.flatMap(decode).map((p) => p.cmd), expected);
  });

  it('hands many packets in one chunk on as a single run, without copying them', () => {
    const many = Buffer.concat(Array.from({ length: 1000 }, (_, i) => (i % 2 ? PINGREQ : PUBLISH)));
    const f = new MqttFramer(1 << 20);
    const runs = run(f, [many]);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.buffer, many.buffer, 'a subarray of the chunk');
    assert.equal(decode(runs[0]!).length, 1000);
    assert.equal(f.copied, 0);
    assert.equal(f.pending, 0);
  });

  it('refuses a Remaining Length of more than four bytes, after the whole packets before it', () => {
    const bad = hex('30 ff ff ff ff 01');
    const f = new MqttFramer(1 << 28);
    const runs: Buffer[] = [];
    assert.throws(
      () => f.feed(Buffer.concat([PUBLISH, bad]), (b) => runs.push(b)),
      (e: unknown) => e instanceof MqttFrameError && e.kind === 'malformed',
    );
    assert.deepEqual(runs, [PUBLISH]);
    // and again on any later chunk
    assert.throws(() => f.feed(PINGREQ, () => assert.fail('nothing after a fault')), MqttFrameError);

    // The same, one byte at a time: refused at the fifth header byte.
    const g = new MqttFramer(1 << 28);
    for (const b of hex('30 ff ff ff')) g.feed(Buffer.from([b]), () => assert.fail());
    assert.throws(() => g.feed(hex('ff'), () => assert.fail()), (e: unknown) => e instanceof MqttFrameError && e.kind === 'malformed');
  });

  it('accepts the largest four-byte Remaining Length in the header and refuses it for size at once', () => {
    // ff ff ff 7f = 268,435,455: valid, but over a 1 MiB limit; refused before any body byte arrives.
    const f = new MqttFramer(1 << 20);
    assert.throws(
      () => f.feed(hex('30 ff ff ff 7f'), () => assert.fail()),
      (e: unknown) => e instanceof MqttFrameError && e.kind === 'too_large' && /268435460 bytes/.test(e.message),
    );
  });

  it('refuses a packet one byte over the limit and takes one at the limit (the fixed header counts)', () => {
    const p = bigPublish(1000);
    assert.equal(decode(Buffer.concat(run(new MqttFramer(p.length), [p]))).length, 1);
    assert.throws(() => run(new MqttFramer(p.length - 1), [p.subarray(0, 3)]), (e: unknown) => e instanceof MqttFrameError && e.kind === 'too_large');
  });

  it('holds only the bytes received of a packet that announces 266 MB (nothing is allocated for what has not arrived)', () => {
    const f = new MqttFramer(1 << 28);
    f.feed(hex('30 80 80 80 7f'), () => assert.fail()); // announces 266 MB
    f.feed(hex('0001 74'), () => assert.fail());
    assert.equal(f.pending, 8);
  });

  it('does work linear in the bytes when a 200 KB PUBLISH arrives one byte per chunk', () => {
    const measure = (payload: number): { copied: number; ms: number } => {
      const packet = bigPublish(payload);
      const f = new MqttFramer(1 << 20);
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      let got = 0;
      parser.on('packet', () => got++);
      const started = process.hrtime.bigint();
      for (let i = 0; i < packet.length; i++) f.feed(packet.subarray(i, i + 1), (b) => parser.parse(b));
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      assert.equal(got, 1);
      return { copied: f.copied, ms };
    };
    const small = measure(50_000);
    const large = measure(200_000);
    // Deterministic: each byte is copied at most three times (once in, at most twice more as the buffer doubles).
    assert.ok(large.copied <= 3 * 200_010, `copied ${large.copied} bytes for a 200 KB packet`);
    assert.ok(large.copied / small.copied < 4.5, `4× the bytes cost ${(large.copied / small.copied).toFixed(2)}× the copying`);
    // And in time (loosely: the machine is shared). mqtt-packet alone takes seconds for this.
    assert.ok(large.ms < 1500, `${large.ms.toFixed(0)} ms for 200,000 one-byte chunks`);
    console.log(`# 200 KB PUBLISH in one-byte chunks: ${large.copied} bytes copied (${(large.copied / 200_010).toFixed(2)} per byte), ${large.ms.toFixed(0)} ms with mqtt-packet`);
  });
});
