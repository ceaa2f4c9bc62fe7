/**
 * What a parsed STOMP frame's headers keep alive. A header value is kept
 * as long as its message (custom headers travel with it, held for a slow
 * subscriber or waiting for an ACK), and is counted by its own length
 * (pinnedSize). A V8 string cut from a longer one keeps that one alive, so
 * a value cut from a string of the whole header block would keep the
 * block (up to stompMaxHeaderBytes) for every message.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { StompParser, type StompFrame } from '../../src/protocols/stomp/codec.js';
import { customHeaders } from '../../src/protocols/stomp/message-frame.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('STOMP header block memory', () => {
  it('a kept header value does not hold on to the whole header block it was read from', () => {
    const parser = new StompParser({ maxHeaderBytes: 16_384, maxHeaders: 100, maxBodyBytes: 1024 });
    // 15 KB of a header no message keeps (message-id is the server's), then a custom header that travels with the message.
    const pad = 'p'.repeat(15_000);
    const kept: unknown[] = [];
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1000; i++) {
      const bytes = Buffer.from(`SEND\ndestination:/topic/a\nmessage-id:${pad}${i}\nx-kept:value-number-${String(i).padStart(6, '0')}\n\nbody\0`);
      parser.feed(bytes, (e) => {
        if (e.type === 'frame') kept.push(customHeaders(e.frame as StompFrame));
      });
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    assert.equal(kept.length, 1000);
    assert.deepEqual(kept[999], [['x-kept', 'value-number-000999']]);
    // 1000 kept values of ~20 characters: well under a megabyte; 1000 header blocks would be 15 MB.
    assert.ok(grown < 4_000_000, `1000 kept header values hold ${(grown / 1e6).toFixed(1)} MB`);
  });
});
