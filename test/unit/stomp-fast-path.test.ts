/**
 * The STOMP publish path's fast forms against the plain ones they replace:
 * MESSAGE frames written without a header list (and inside their WebSocket
 * frame) must be byte for byte what the header-list encoder writes; the
 * parser's single-string header reading and its short-line search must read
 * what the per-line decoding read, for any text and any chunking.
 */
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { topicToDotted } from '../../src/core/destination.js';
import { createMessage, type CoreMessage, type HeaderList } from '../../src/core/message.js';
import { encodeFrame, StompParser, StompSyntaxError, type ParseEvent, type StompFrame } from '../../src/protocols/stomp/codec.js';
import { customHeaders, encodeMessageFrame, preparedMessageFrame, type AckMode, type MessageFrameSubscription, type Version } from '../../src/protocols/stomp/message-frame.js';
import { wsFrame } from '../../src/transports/ws-frame.js';

/** The MESSAGE encoder as it was: a header list, then encodeFrame (the reference the fast one must match). */
const RESERVED = new Set(['destination', 'content-length', 'content-type', 'receipt', 'receipt-id', 'transaction', 'message-id', 'subscription', 'ack', 'redelivered', 'id', 'version', 'heart-beat', 'session', 'server', 'content-transfer-encoding']);
function referenceFrame(sub: MessageFrameSubscription, msg: CoreMessage, redelivered: boolean, version: Version, framing: string): Buffer {
  const t = msg.target;
  const destination = t.kind === 'topic' ? '/topic/' + topicToDotted(t.topic) : t.kind === 'queue' ? '/queue/' + t.name : sub.destination;
  const headers: HeaderList = [
    ['subscription', sub.id],
    ['message-id', msg.id],
    ['destination', destination],
  ];
  if (version === '1.2' && sub.ackMode !== 'auto') headers.push(['ack', `${msg.id}:${sub.id}`]);
  if (redelivered) headers.push(['redelivered', 'true']);
  if (msg.contentType) headers.push(['content-type', msg.contentType]);
  let body = msg.body;
  if (version !== '1.2' && framing === 'ws' && msg.body.includes(0)) {
    body = Buffer.from(msg.body.toString('base64'));
    headers.push(['content-transfer-encoding', 'base64']);
  }
  if (msg.replyTo) headers.push(['reply-to', msg.replyTo]);
  if (msg.correlation) headers.push(['correlation-id', msg.correlation.toString(isUtf8(msg.correlation) ? 'utf8' : 'base64')]);
  const own = new Set<string>(headers.map(([k]) => k));
  for (const h of msg.headers) {
    const name = h[0].trim();
    if (!RESERVED.has(name) && !own.has(name)) headers.push(h);
  }
  return encodeFrame('MESSAGE', headers, body, version !== '1.0');
}

const text = fc.string({ maxLength: 30, unit: 'binary' });
const headerArb = fc.tuple(
  fc.oneof(text, fc.constantFrom('reply-to', ' reply-to', 'correlation-id', 'content-length', ' content-length ', 'message-id', 'subscription', 'x:y', 'a\nb', 'custom')),
  fc.oneof(text, fc.constantFrom('', 'a:b', 'c\\d', 'e\r\nf', 'nul\0here')),
);

describe('STOMP MESSAGE frames: the fast encoder', () => {
  it('writes what the header-list encoder writes, for every version, ack mode, framing and header', () => {
    fc.assert(
      fc.property(
        fc.record({
          version: fc.constantFrom<Version>('1.0', '1.1', '1.2'),
          ackMode: fc.constantFrom<AckMode>('auto', 'client', 'client-individual'),
          subId: fc.oneof(text, fc.constantFrom('sub-1', 'a:b', 'x\ny')),
          destination: fc.constantFrom('/user/queue/inbox', '/user/queue/a:b'),
          target: fc.oneof(
            fc.constantFrom('a/b', 'chat/room.1/x', 'a\nb/c'),
            fc.constantFrom('jobs', 'q:1').map((name) => ({ queue: name })),
            fc.constant(null),
          ),
          body: fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(new Uint8Array(0), new Uint8Array(70_000).fill(65), new Uint8Array(300).fill(0))),
          contentType: fc.option(fc.constantFrom('text/plain', 'application/json', 'a:b\nc'), { nil: undefined }),
          replyTo: fc.option(fc.constantFrom('/topic/replies', 'x\0y'), { nil: undefined }),
          correlation: fc.option(fc.uint8Array({ maxLength: 10 }).map((a) => Buffer.from(a)), { nil: undefined }),
          headers: fc.array(headerArb, { maxLength: 5 }),
          redelivered: fc.boolean(),
          framing: fc.constantFrom('ws', 'tcp'),
        }),
        (c) => {
          const target = c.target === null ? { kind: 'user' as const, userId: 'u1', name: 'inbox' } : typeof c.target === 'string' ? { kind: 'topic' as const, topic: c.target } : { kind: 'queue' as const, name: c.target.queue };
          const msg = createMessage({ target, body: Buffer.from(c.body), contentType: c.contentType, replyTo: c.replyTo, correlation: c.correlation, headers: c.headers });
          const sub = { id: c.subId, destination: c.destination, ackMode: c.ackMode };
          const expected = referenceFrame(sub, msg, c.redelivered, c.version, c.framing);
          assert.deepEqual(encodeMessageFrame(sub, msg, c.redelivered, c.version, c.framing), expected);
          const prepared = preparedMessageFrame(sub, msg, c.redelivered, c.version, c.framing);
          assert.deepEqual(prepared, c.framing === 'ws' ? wsFrame(expected, msg.textBody) : expected);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('frames WebSocket payloads of every header size (7-bit, 16-bit and 64-bit lengths), text for UTF-8 bodies and binary for others', () => {
    const sub = { id: 's', destination: '/topic/a', ackMode: 'auto' as const };
    for (const [size, lengthByte, headLen] of [[10, -1, 2], [1000, 126, 4], [70_000, 127, 10]] as const) {
      for (const body of [Buffer.alloc(size, 0x61), Buffer.alloc(size, 0xff)]) {
        const msg = createMessage({ target: { kind: 'topic', topic: 'a' }, body });
        const out = preparedMessageFrame(sub, msg, false, '1.2', 'ws');
        assert.equal(out[0], body[0] === 0x61 ? 0x81 : 0x82, 'FIN and the opcode');
        if (lengthByte > 0) assert.equal(out[1], lengthByte);
        const payload = out.subarray(headLen);
        assert.deepEqual(out, wsFrame(payload, body[0] === 0x61));
        assert.equal(payload[payload.length - 1], 0, 'the STOMP frame ends with its NUL');
      }
    }
  });
});

describe('STOMP SEND headers that travel with the message', () => {
  const send = (headers: HeaderList): StompFrame => ({ command: 'SEND', headers, body: Buffer.alloc(0) });

  it('none when a SEND has only the protocol\'s headers', () => {
    assert.deepEqual(customHeaders(send([['destination', '/topic/a'], ['content-length', '3'], ['receipt', 'r'], ['content-type', 'text/plain']])), []);
  });

  it('keeps the first of repeats (names compared trimmed), drops the protocol\'s own and any with a NUL', () => {
    const got = customHeaders(
      send([
        ['x-a', '1'],
        [' message-id', 'forged'],
        ['x-b', 'nul\0'],
        ['x-a ', '2'],
        ['x-b', 'ok'],
        ['x\0c', '3'],
        ['x-c', '4'],
      ]),
    );
    assert.deepEqual(got, [
      ['x-a', '1'],
      ['x-b', 'ok'],
      ['x-c', '4'],
    ]);
  });
});

function parseAll(chunks: Buffer[], parser = new StompParser()): StompFrame[] {
  const frames: StompFrame[] = [];
  const emit = (e: ParseEvent) => {
    if (e.type === 'frame') frames.push(e.frame);
  };
  for (const c of chunks) parser.feed(c, emit);
  return frames;
}

describe('STOMP parser: header reading', () => {
  it('reads any Unicode header, short or over the short-line search, through any chunking', () => {
    const value = fc.oneof(fc.string({ maxLength: 20, unit: 'binary' }), fc.string({ minLength: 100, maxLength: 400, unit: 'binary' }));
    const name = fc.string({ minLength: 1, maxLength: 12, unit: 'binary' }).filter((s) => s.trim() !== 'content-length' && !s.includes('\0'));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(name, value.filter((v) => !v.includes('\0'))), { maxLength: 5 }),
        fc.uint8Array({ maxLength: 50 }),
        fc.integer({ min: 1, max: 700 }),
        (headers, body, cut) => {
          const bytes = Buffer.concat([encodeFrame('SEND', headers, Buffer.from(body)), encodeFrame('SEND', [['destination', '/topic/a']])]);
          const chunks: Buffer[] = [];
          for (let pos = 0; pos < bytes.length; pos += cut) chunks.push(bytes.subarray(pos, pos + cut));
          const [first, second] = parseAll(chunks);
          const expected = [...headers];
          if (body.length > 0) expected.push(['content-length', String(body.length)]);
          assert.deepEqual(first!.headers, expected);
          assert.deepEqual(first!.body, Buffer.from(body));
          assert.deepEqual(second!.headers, [['destination', '/topic/a']]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('finds the end of a line past the short-line search, and still holds long lines to the header limit', () => {
    const long = 'v'.repeat(5000);
    const [frame] = parseAll([Buffer.from(`SEND\nx:${long}\ndestination:/topic/a\n\nhi\0`)]);
    assert.deepEqual(frame!.headers, [['x', long], ['destination', '/topic/a']]);
    const small = () => new StompParser({ maxHeaderBytes: 200, maxHeaders: 10, maxBodyBytes: 100 });
    assert.throws(
      () => parseAll([Buffer.from(`SEND\nx:${'v'.repeat(150)}`), Buffer.from(`${'v'.repeat(100)}\n\n\0`)], small()),
      (e: unknown) => e instanceof StompSyntaxError && /header block exceeds the 200-byte limit/.test(e.message),
    );
  });

  it('reads UTF-8 names and values by characters, and refuses bytes that are not UTF-8 wherever they are', () => {
    const [frame] = parseAll([Buffer.from('SEND\ndestination:/topic/caf\u00e9\nr\u00e9sum\u00e9:\u2603 \u{1f600}\n\n\0')]);
    assert.deepEqual(frame!.headers, [['destination', '/topic/caf\u00e9'], ['r\u00e9sum\u00e9', '\u2603 \u{1f600}']]);
    for (const bad of [Buffer.from([0xc3, 0x28]), Buffer.from([0xff]), Buffer.from([0xed, 0xa0, 0x80])]) {
      const frameBytes = Buffer.concat([Buffer.from('SEND\ndestination:/topic/a\nx:'), bad, Buffer.from('\n\n\0')]);
      assert.throws(() => parseAll([frameBytes]), (e: unknown) => e instanceof StompSyntaxError && /not valid UTF-8/.test(e.message));
    }
  });

  it('counts headers the same whether they come at once or a byte at a time', () => {
    const p = () => new StompParser({ maxHeaderBytes: 1000, maxHeaders: 3, maxBodyBytes: 10 });
    const ok = Buffer.from('SEND\na:1\nb:2\nc:3\n\n\0');
    const over = Buffer.from('SEND\na:1\nb:2\nc:3\nd:4\n\n\0');
    assert.equal(parseAll([ok], p()).length, 1);
    assert.equal(parseAll([...ok].map((b) => Buffer.from([b])), p()).length, 1);
    for (const chunks of [[over], [...over].map((b) => Buffer.from([b]))]) {
      assert.throws(() => parseAll(chunks, p()), (e: unknown) => e instanceof StompSyntaxError && /more than 3 headers/.test(e.message));
    }
  });
});
