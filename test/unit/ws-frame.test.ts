import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventEmitter } from 'node:events';
import * as ws from 'ws';

// ws exports its frame parser at run time; @types/ws does not declare it.
const { Receiver } = ws as unknown as {
  Receiver: new (opts: { isServer: boolean; maxPayload: number }) => EventEmitter & { write(b: Buffer): void };
};
import { wsFrame } from '../../src/transports/ws-frame.js';

/** Decodes frames with ws's own client-side Receiver: what a real client would see. */
function decode(frame: Buffer): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve, reject) => {
    const r = new Receiver({ isServer: false, maxPayload: 1 << 30 });
    r.on('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary }));
    r.on('error', reject);
    r.write(frame);
  });
}

describe('wsFrame', () => {
  for (const len of [0, 1, 125, 126, 65535, 65536, 200_000]) {
    it(`frames a ${len}-byte payload the way a client decodes it`, async () => {
      const payload = Buffer.alloc(len, 0x61);
      const text = await decode(wsFrame(payload, true));
      assert.equal(text.isBinary, false);
      assert.equal(text.data.length, len);
      const bin = await decode(wsFrame(payload, false));
      assert.equal(bin.isBinary, true);
      assert.deepEqual(bin.data, payload);
    });
  }
});
