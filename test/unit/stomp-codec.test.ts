import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  encodeFrame,
  escapeHeader,
  header,
  StompParser,
  StompSyntaxError,
  unescapeHeader,
  type ParseEvent,
  type StompFrame,
} from '../../src/protocols/stomp/codec.js';

function parseAll(chunks: (Buffer | string)[], parser = new StompParser()): { frames: StompFrame[]; beats: number } {
  const frames: StompFrame[] = [];
  let beats = 0;
  const emit = (e: ParseEvent) => (e.type === 'frame' ? frames.push(e.frame) : beats++);
  for (const c of chunks) parser.feed(typeof c === 'string' ? Buffer.from(c, 'utf8') : c, emit);
  return { frames, beats };
}

const syntaxError = (re: RegExp) => (e: unknown) => e instanceof StompSyntaxError && re.test(e.message);

describe('STOMP codec: parsing', () => {
  it('parses a frame with LF and with CRLF line ends', () => {
    const { frames } = parseAll(['SEND\ndestination:/topic/a\n\nhello\0', 'SEND\r\ndestination:/topic/b\r\n\r\nworld\0']);
    assert.equal(frames.length, 2);
    assert.equal(frames[0]!.command, 'SEND');
    assert.equal(header(frames[0]!, 'destination'), '/topic/a');
    assert.equal(frames[0]!.body.toString(), 'hello');
    assert.equal(header(frames[1]!, 'destination'), '/topic/b');
    assert.equal(frames[1]!.body.toString(), 'world');
  });

  it('reads exactly content-length octets, NULs included', () => {
    const body = Buffer.from([0, 1, 0, 255, 0]);
    const frame = Buffer.concat([Buffer.from('SEND\ndestination:/q\ncontent-length:5\n\n'), body, Buffer.from([0])]);
    const { frames } = parseAll([frame]);
    assert.deepEqual(frames[0]!.body, body);
  });

  it('skips heart-beat EOLs between frames and reports them', () => {
    const { frames, beats } = parseAll(['\n', '\r\n\nSEND\ndestination:/a\n\n\0\n\nSEND\ndestination:/b\n\n\0\n']);
    assert.equal(frames.length, 2);
    assert.ok(beats >= 2);
  });

  it('reads many frames per chunk and one frame split over many chunks', () => {
    const one = 'SEND\ndestination:/topic/x\ncontent-length:3\n\nabc\0';
    const { frames } = parseAll([one + one + one]);
    assert.equal(frames.length, 3);
    const bytes = Buffer.from(one.repeat(2));
    const split = [...bytes].map((b) => Buffer.from([b]));
    const r = parseAll(split);
    assert.equal(r.frames.length, 2);
    assert.equal(r.frames[1]!.body.toString(), 'abc');
  });

  it('keeps the first of repeated headers (and all of them in order)', () => {
    const { frames } = parseAll(['MESSAGE\nfoo:1\nfoo:2\n\n\0']);
    assert.equal(header(frames[0]!, 'foo'), '1');
    assert.deepEqual(frames[0]!.headers, [['foo', '1'], ['foo', '2']]);
  });

  it('unescapes headers, except on CONNECT and when escaping is off (STOMP 1.0)', () => {
    const { frames } = parseAll(['SEND\nk\\cey:a\\nb\\\\c\\rd\n\n\0', 'CONNECT\nlogin:a\\cb\n\n\0']);
    assert.deepEqual(frames[0]!.headers, [['k:ey', 'a\nb\\c\rd']]);
    assert.deepEqual(frames[1]!.headers, [['login', 'a\\cb']]);
    const p = new StompParser();
    p.escaping = false;
    assert.deepEqual(parseAll(['SEND\nx:a\\cb\n\n\0'], p).frames[0]!.headers, [['x', 'a\\cb']]);
  });

  it('refuses an undefined escape sequence', () => {
    assert.throws(() => parseAll(['SEND\nx:a\\tb\n\n\0']), syntaxError(/undefined escape sequence "\\t"/));
  });

  it('refuses a bad content-length, with the receipt when known', () => {
    assert.throws(() => parseAll(['SEND\nreceipt:r1\ncontent-length:abc\n\n\0']), (e: unknown) => e instanceof StompSyntaxError && /content-length "abc"/.test(e.message) && e.receipt === 'r1');
    assert.throws(() => parseAll(['SEND\ncontent-length:-1\n\n\0']), syntaxError(/content-length/));
    assert.throws(() => parseAll(['SEND\ncontent-length:2\n\nabc\0']), syntaxError(/no NUL after that many octets/));
  });

  it('enforces the header count, header size and body size limits', () => {
    const p = () => new StompParser({ maxHeaderBytes: 100, maxHeaders: 3, maxBodyBytes: 10 });
    assert.throws(() => parseAll(['SEND\na:1\nb:2\nc:3\nd:4\n\n\0'], p()), syntaxError(/more than 3 headers/));
    assert.throws(() => parseAll(['SEND\nx:' + 'y'.repeat(200) + '\n\n\0'], p()), syntaxError(/header block exceeds the 100-byte limit/));
    assert.throws(() => parseAll(['SEND\nx:' + 'y'.repeat(200)], p()), syntaxError(/100-byte limit/), 'even before the line ends');
    assert.throws(() => parseAll(['SEND\ncontent-length:11\n\n'], p()), syntaxError(/exceeds the 10-byte body limit/));
    assert.throws(() => parseAll(['SEND\n\n' + 'z'.repeat(11)], p()), syntaxError(/exceeds the 10-byte limit/), 'no NUL in sight');
    assert.equal(parseAll(['SEND\n\n' + 'z'.repeat(10) + '\0'], p()).frames.length, 1);
  });

  it('refuses header lines without a colon, empty names and invalid UTF-8', () => {
    assert.throws(() => parseAll(['SEND\nnocolon\n\n\0']), syntaxError(/has no colon/));
    assert.throws(() => parseAll(['SEND\n:value\n\n\0']), syntaxError(/empty name/));
    const bad = Buffer.concat([Buffer.from('SEND\nx:'), Buffer.from([0xc3, 0x28]), Buffer.from('\n\n\0')]);
    assert.throws(() => parseAll([bad]), syntaxError(/not valid UTF-8/));
  });

  it('allows colons in header values (split at the first)', () => {
    assert.equal(header(parseAll(['SEND\nurl:http://x:1/\n\n\0']).frames[0]!, 'url'), 'http://x:1/');
  });
});

describe('STOMP codec: encoding', () => {
  it('adds content-length and escapes headers', () => {
    const f = encodeFrame('MESSAGE', [['a:b', 'x\ny']], 'hé').toString('utf8');
    assert.equal(f, 'MESSAGE\na\\cb:x\\ny\ncontent-length:3\n\nhé\0');
  });

  it('does not escape CONNECTED / STOMP 1.0 but keeps lines intact', () => {
    assert.equal(encodeFrame('CONNECTED', [['version', '1.0'], ['x', 'a:b\nc']], '', false).toString(), 'CONNECTED\nversion:1.0\nx:a:b c\n\n\0');
  });

  it('escape and unescape are inverse', () => {
    fc.assert(fc.property(fc.string(), (s) => unescapeHeader(escapeHeader(s)) === s));
  });

  it('round-trips any frame through any chunking', () => {
    const headerName = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== 'content-length');
    const frameArb = fc.record({
      command: fc.constantFrom('SEND', 'MESSAGE', 'SUBSCRIBE', 'ACK'),
      headers: fc.array(fc.tuple(headerName, fc.string({ maxLength: 20 })), { maxLength: 6 }),
      body: fc.uint8Array({ maxLength: 200 }),
    });
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 4 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => Buffer.concat([encodeFrame(f.command, f.headers, Buffer.from(f.body)), Buffer.from('\n')])));
        const chunks: Buffer[] = [];
        let pos = 0;
        for (let i = 0; pos < bytes.length; i++) {
          const n = cuts[i % cuts.length]!;
          chunks.push(bytes.subarray(pos, pos + n));
          pos += n;
        }
        const parsed = parseAll(chunks).frames;
        assert.equal(parsed.length, frames.length);
        parsed.forEach((p, i) => {
          const f = frames[i]!;
          assert.equal(p.command, f.command);
          assert.deepEqual(p.body, Buffer.from(f.body));
          const expected = [...f.headers];
          if (f.body.length > 0) expected.push(['content-length', String(f.body.length)]);
          assert.deepEqual(p.headers, expected);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('never throws anything but StompSyntaxError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          parseAll([Buffer.from(bytes)], new StompParser({ maxHeaderBytes: 64, maxHeaders: 4, maxBodyBytes: 64 }));
        } catch (e) {
          assert.ok(e instanceof StompSyntaxError, String(e));
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('STOMP codec: the encoder owns the frame structure', () => {
  const parse = (b: Buffer) => parseAll([b]).frames;

  it('writes the real content-length and drops any the caller passed (also with spaces around the name)', () => {
    const body = 'x\0MESSAGE\nmessage-id:forged-1\n\nforged';
    const f = encodeFrame('MESSAGE', [['message-id', 'real-1'], ['content-length', '1'], [' content-length ', '2']], body);
    const frames = parse(f);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.body.toString(), body);
    assert.deepEqual(frames[0]!.headers, [['message-id', 'real-1'], ['content-length', String(Buffer.byteLength(body))]]);
  });

  it('drops headers with an empty name or a NUL, which stomp.js 2.x would take for the end of the frame', () => {
    const f = encodeFrame('MESSAGE', [['', 'v'], ['a\0b', 'v'], ['ok', 'x\0MESSAGE'], ['kept', 'yes']], 'b');
    assert.equal(f.indexOf(0), f.length - 1, 'the only NUL ends the frame');
    assert.deepEqual(parse(f)[0]!.headers, [['kept', 'yes'], ['content-length', '1']]);
  });

  it('without escapes (STOMP 1.0) drops names that would break the line, and flattens values', () => {
    const f = encodeFrame('MESSAGE', [['content-type:text/html', 'x'], ['a\nb', 'y'], ['fine', 'p\r\nq:r']], '', false);
    assert.equal(f.toString(), 'MESSAGE\nfine:p  q:r\n\n\0');
  });
});
