/**
 * STOMP heart-beats of 2 s and more are sent and checked by one shared
 * sweep rather than two timers per connection (issue 16): the server's
 * beats still come at most the negotiated interval apart, and a silent
 * client is still cut after the interval plus its grace, while another
 * client that beats stays.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { connect } from 'node:net';
import { ADMIN_PASSWORD, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';

const ADMIN = { login: 'admin', passcode: ADMIN_PASSWORD };

describe('STOMP heart-beats from the shared sweep', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ stompHeartbeatMs: 2000 });
  });
  after(() => s.stop());

  it('beats at most the interval apart, cuts the silent client after interval plus grace, and keeps the beating one', async () => {
    const port = s.server.address('stomp').port;
    // The beating client: a raw socket that records when each server beat (a lone EOL) arrives, and beats back.
    let beats = 0;
    const beating = connect(port, '127.0.0.1');
    await new Promise((r) => beating.once('connect', r));
    let connectedAt = 0;
    let beatingClosed = false;
    beating.on('close', () => (beatingClosed = true));
    beating.on('data', (d: Buffer) => {
      const text = d.toString();
      if (text.startsWith('CONNECTED')) connectedAt = Date.now();
      else if (/^\n+$/.test(text) && connectedAt) beats += text.length;
    });
    beating.write(`CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:${ADMIN_PASSWORD}\nheart-beat:2000,2000\n\n\0`);
    const ticker = setInterval(() => beating.write('\n'), 1000);

    const silent = await RawStomp.tcp(port);
    // Timed from before its CONNECT, so the server's clock for its silence starts after ours.
    const started = Date.now();
    const f = await silent.connect({ ...ADMIN, 'heart-beat': '2000,2000' });
    assert.equal(frameHeader(f, 'heart-beat'), '2000,2000');
    try {
      const err = await silent.next('ERROR', 8000);
      const cut = Date.now() - started;
      assert.equal(frameHeader(err, 'message'), 'heart-beat timeout');
      assert.ok(cut >= 3900, `cut after ${cut} ms, before 2 s + 2 s of grace`);
      assert.ok(silent.heartbeats >= 2, `the silent client was sent ${silent.heartbeats} beats meanwhile`);
      await silent.closedPromise;
      assert.ok(connectedAt > 0, 'the beating client connected');
      // At least one beat per negotiated interval (a sweep that waited for the interval plus its period would fall short).
      const elapsed = Date.now() - connectedAt;
      assert.ok(beats >= Math.floor(elapsed / 2000), `${beats} beats in ${elapsed} ms: fewer than one per 2000 ms`);
      assert.equal(beatingClosed, false, 'a client that beats is never cut');
    } finally {
      clearInterval(ticker);
      beating.destroy();
    }
  });
});
