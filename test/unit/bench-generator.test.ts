/**
 * The benchmark's load generator counts loss and parses every frame with
 * its own code; a figure is only as honest as that code, so it is tested
 * here: body stamps, the per-message tally, the STOMP frame parser, the
 * MQTT and STOMP encoders (read back by mqtt-packet and the parser), and
 * the WebSocket client against the `ws` server.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { mqttPublishEncoder, stompSendEncoder } from '../../bench/gen/clients.js';
import { bodyTemplate, decode, decoded, stamp, STAMP_BYTES } from '../../bench/gen/payload.js';
import { FrameParser, headerOf, type Frame } from '../../bench/gen/stomp-frames.js';
import { Tally } from '../../bench/gen/tally.js';
import { encodeFrame, WsClient } from '../../bench/gen/ws-client.js';

describe('bench generator: body stamps', () => {
  it('reads back publisher, sequence and time from a stamped body', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999_999 }), fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 0, max: 2 ** 52 }), (pub, seq, t) => {
        const b = bodyTemplate(100);
        stamp(b, 0, pub, seq, t);
        assert.equal(decode(b, 0, 100, 100), true);
        assert.deepEqual({ ...decoded }, { pub, seq, timeUs: t });
      }),
    );
  });

  it('refuses a body of another length or without a stamp', () => {
    const b = bodyTemplate(100);
    stamp(b, 0, 1, 2, 3);
    assert.equal(decode(b, 0, 99, 100), false);
    assert.equal(decode(Buffer.alloc(100, 0x78), 0, 100, 100), false);
    assert.equal(decode(b, 0, STAMP_BYTES - 1, STAMP_BYTES - 1), false);
  });
});

describe('bench generator: tally', () => {
  it('counts distinct messages, duplicates and reordering per publisher', () => {
    const t = new Tally();
    for (const [pub, seq] of [
      [0, 0],
      [0, 1],
      [0, 1],
      [1, 0],
      [0, 3],
      [0, 2],
      [1, 5000],
    ] as const)
      t.add(pub, seq);
    assert.equal(t.unique, 6);
    assert.equal(t.duplicates, 1);
    assert.equal(t.reordered, 1);
    assert.deepEqual(t.uniqueByPub, [4, 2]);
  });
});

function frame(command: string, headers: [string, string][], body: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${command}\n${headers.map(([k, v]) => `${k}:${v}\n`).join('')}\n`), Buffer.from(body), Buffer.from([0])]);
}

describe('bench generator: STOMP frame parser', () => {
  const stream = Buffer.concat([
    Buffer.from('\n\r\n'),
    frame('CONNECTED', [['version', '1.2'], ['server', 'a:b']], ''),
    frame('MESSAGE', [['destination', '/topic/a\\cb'], ['content-length', '5']], Buffer.from([1, 0, 2, 0, 3])),
    Buffer.from('\n'),
    frame('RECEIPT', [['receipt-id', 'r\\n1']], ''),
    frame('MESSAGE', [['destination', '/topic/x']], 'hello'),
  ]);
  const check = (frames: Frame[]): void => {
    assert.deepEqual(
      frames.map((f) => f.command),
      ['CONNECTED', 'MESSAGE', 'RECEIPT', 'MESSAGE'],
    );
    assert.equal(headerOf(frames[0]!, 'server'), 'a:b');
    assert.equal(headerOf(frames[1]!, 'destination'), '/topic/a:b');
    assert.deepEqual([...frames[1]!.body], [1, 0, 2, 0, 3]);
    assert.equal(headerOf(frames[2]!, 'receipt-id'), 'r\n1');
    assert.equal(frames[3]!.body.toString(), 'hello');
  };

  it('parses frames, heart-beats, content-length bodies with NULs and escapes in one chunk', () => {
    const frames: Frame[] = [];
    new FrameParser().feed(stream, (f) => frames.push({ ...f, body: Buffer.from(f.body) }));
    check(frames);
  });

  it('gives the same frames however the bytes are split into chunks', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 20 }), (cuts) => {
        const points = [0, ...cuts.sort((a, b) => a - b), stream.length];
        const p = new FrameParser();
        const frames: Frame[] = [];
        for (let i = 0; i + 1 < points.length; i++) p.feed(stream.subarray(points[i], points[i + 1]), (f) => frames.push({ ...f, body: Buffer.from(f.body) }));
        check(frames);
      }),
    );
  });

  it('refuses a header line without a colon and a body not followed by NUL', () => {
    assert.throws(() => new FrameParser().feed(Buffer.from('MESSAGE\nnocolon\n\n\0'), () => undefined), /without a colon/);
    assert.throws(() => new FrameParser().feed(Buffer.from('MESSAGE\ncontent-length:2\n\nabc\0'), () => undefined), /no NUL/);
    assert.throws(() => new FrameParser().feed(Buffer.from('MESSAGE\nx:a\\tb\n\n\0'), () => undefined), /undefined escape/);
  });
});

describe('bench generator: encoders', () => {
  it('MQTT PUBLISH reads back through mqtt-packet for bodies across the length-byte boundaries', () => {
    for (const size of [40, 100, 124, 125, 126, 127, 128, 16_379, 16_384, 70_000]) {
      const enc = mqttPublishEncoder(['bench', 'p2p', '7'], bodyTemplate(size));
      const buf = Buffer.alloc(enc.bytes * 2);
      for (let i = 0; i < 2; i++) stamp(buf, enc.place(buf, i * enc.bytes), 7, i, 42);
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      const got: mqttPacket.IPublishPacket[] = [];
      parser.on('packet', (p: mqttPacket.Packet) => got.push(p as mqttPacket.IPublishPacket));
      parser.parse(buf);
      assert.equal(got.length, 2, `size ${size}`);
      for (const [i, p] of got.entries()) {
        assert.equal(p.topic, 'bench/p2p/7');
        assert.equal(p.qos, 0);
        assert.equal(decode(p.payload as Buffer, 0, (p.payload as Buffer).length, size), true);
        assert.deepEqual({ ...decoded }, { pub: 7, seq: i, timeUs: 42 });
      }
    }
  });

  it('STOMP SEND over TCP reads back through the frame parser', () => {
    const enc = stompSendEncoder(['bench', 'fanin'], bodyTemplate(100), false);
    const buf = Buffer.alloc(enc.bytes * 3);
    for (let i = 0; i < 3; i++) {
      stamp(buf, enc.place(buf, i * enc.bytes), 1, i, 9);
      enc.seal(buf, i * enc.bytes);
    }
    const frames: Frame[] = [];
    new FrameParser().feed(buf, (f) => frames.push({ ...f, body: Buffer.from(f.body) }));
    assert.equal(frames.length, 3);
    for (const [i, f] of frames.entries()) {
      assert.equal(f.command, 'SEND');
      assert.equal(headerOf(f, 'destination'), '/topic/bench.fanin');
      assert.equal(decode(f.body, 0, f.body.length, 100), true);
      assert.equal(decoded.seq, i);
    }
  });
});

describe('bench generator: WebSocket client', () => {
  async function server(refuse = false): Promise<{ wss: WebSocketServer; port: number; next: Promise<ServerSocket> }> {
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      handleProtocols: (p) => (p.has('v12.stomp') ? 'v12.stomp' : false),
      verifyClient: (_info, done) => done(!refuse, 401, 'token required'),
    });
    await once(wss, 'listening');
    const next = once(wss, 'connection').then(([s]) => s as ServerSocket);
    return { wss, port: (wss.address() as { port: number }).port, next };
  }

  it('sends masked frames one by one and in a batch, and reads text, binary, large and fragmented messages', async () => {
    const { wss, port, next } = await server();
    try {
      const client = await WsClient.open({ port, path: '/stomp', protocols: ['v12.stomp', 'v11.stomp'] });
      assert.equal(client.protocol, 'v12.stomp');
      const peer = await next;
      const atServer: string[] = [];
      peer.on('message', (d: Buffer) => atServer.push(d.toString()));
      client.send('one');
      const enc = stompSendEncoder(['t'], Buffer.from('x'.repeat(200)), true);
      const batch = Buffer.alloc(enc.bytes * 2);
      for (let i = 0; i < 2; i++) {
        enc.place(batch, i * enc.bytes);
        enc.seal(batch, i * enc.bytes);
      }
      client.writeFrames(batch);
      const got: Buffer[] = [];
      client.onMessage = (p) => got.push(Buffer.from(p));
      peer.send('text');
      peer.send(Buffer.alloc(70_000, 7));
      peer.send('frag-', { fin: false });
      peer.send('ment', { fin: true });
      const deadline = Date.now() + 5000;
      while ((got.length < 3 || atServer.length < 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const send = `SEND\ndestination:/topic/t\ncontent-length:200\n\n${'x'.repeat(200)}\0`;
      assert.deepEqual(atServer, ['one', send, send]);
      assert.equal(got[0]!.toString(), 'text');
      assert.equal(got[1]!.length, 70_000);
      assert.equal(got[2]!.toString(), 'frag-ment');
      const pong = once(peer, 'pong');
      peer.ping(Buffer.from('hi'));
      assert.equal(((await pong)[0] as Buffer).toString(), 'hi');
      const closed = new Promise<string>((r) => (client.onClose = r));
      peer.close(4401, 'token expired');
      assert.match(await closed, /4401 token expired/);
    } finally {
      wss.close();
    }
  });

  it('reports a refused handshake with the status line', async () => {
    const { wss, port } = await server(true);
    try {
      await assert.rejects(WsClient.open({ port, path: '/stomp', protocols: ['v12.stomp'] }), /WebSocket handshake refused: HTTP\/1\.1 401/);
    } finally {
      wss.close();
    }
  });

  it('frames a payload the ws server unmasks to the same bytes', async () => {
    const { wss, port, next } = await server();
    try {
      const client = await WsClient.open({ port, path: '/', protocols: ['v12.stomp'] });
      const peer = await next;
      const payload = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
      const got = once(peer, 'message');
      client.writeFrames(encodeFrame(payload, 0x2));
      assert.deepEqual((await got)[0], payload);
      client.close();
    } finally {
      wss.close();
    }
  });
});
