/**
 * STOMP over raw TCP (and raw WebSocket where the transport matters):
 * every bad-input case, acks, queues, transactions, heart-beats.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { api, login, startServer, tempDir, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader, wsUrl } from '../helpers/stomp.js';

const ADMIN = { login: 'admin', passcode: ADMIN_PASSWORD };

/** Waits until the server has seen every connection close (fails instead of spinning forever). */
async function noSessions(s: TestServer, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (s.server.ctx.sessions.size > 0) {
    if (Date.now() > deadline) throw new Error(`${s.server.ctx.sessions.size} sessions still open`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function connected(s: TestServer, version = '1.2', headers: Record<string, string> = ADMIN): Promise<RawStomp> {
  const c = await RawStomp.tcp(s.server.address('stomp').port);
  const f = await c.connect(headers, version);
  assert.equal(f.command, 'CONNECTED', f.body.toString());
  return c;
}

/** Sends `frame` and expects an ERROR whose message/body match `re`, then the connection to close. */
async function expectError(c: RawStomp, frame: string | Buffer, re: RegExp, receipt?: string): Promise<void> {
  c.send(frame);
  const err = await c.next('ERROR');
  assert.match(`${frameHeader(err, 'message')} ${err.body.toString()}`, re);
  if (receipt !== undefined) assert.equal(frameHeader(err, 'receipt-id'), receipt);
  await c.closedPromise;
}

describe('STOMP frames over TCP: errors', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ stompMaxHeaders: 8, stompMaxHeaderBytes: 1024, maxBodyBytes: 4096 });
  });
  after(() => s.stop());

  it('answers CONNECT with version, heart-beat, server, session and user-name', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    const f = await c.connect({ ...ADMIN, 'heart-beat': '0,0' }, '1.0,1.1,1.2');
    assert.equal(frameHeader(f, 'version'), '1.2');
    assert.equal(frameHeader(f, 'heart-beat'), '10000,10000');
    assert.match(frameHeader(f, 'server')!, /^Herald\//);
    assert.ok(frameHeader(f, 'session'));
    assert.equal(frameHeader(f, 'user-name'), 'admin');
    c.close();
  });

  it('refuses frames before CONNECT', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    await expectError(c, 'SEND\ndestination:/topic/a\nreceipt:r0\n\nx\0', /SEND before CONNECT/, 'r0');
  });

  it('refuses a second CONNECT', async () => {
    await expectError(await connected(s), 'CONNECT\naccept-version:1.2\n\n\0', /already connected/);
  });

  it('refuses an unsupported version with the supported list', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    const f = await c.connect(ADMIN, '2.0');
    assert.equal(f.command, 'ERROR');
    assert.equal(frameHeader(f, 'version'), '1.0,1.1,1.2');
    await c.closedPromise;
  });

  it('refuses bad credentials', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    const f = await c.connect({ login: 'admin', passcode: 'nope' });
    assert.equal(f.command, 'ERROR');
    assert.equal(frameHeader(f, 'message'), 'authentication failed');
    assert.match(f.body.toString(), /invalid or expired|wrong/);
    await c.closedPromise;
  });

  it('refuses an unknown command', async () => {
    await expectError(await connected(s), 'PUBLISH\ndestination:/topic/a\nreceipt:r1\n\n\0', /unknown command "PUBLISH"/, 'r1');
  });

  it('refuses SEND without a destination, naming the header', async () => {
    await expectError(await connected(s), 'SEND\nreceipt:r2\n\nbody\0', /SEND needs a destination header/, 'r2');
  });

  it('refuses an unknown destination kind', async () => {
    await expectError(await connected(s), 'SEND\ndestination:/exchange/x\n\nbody\0', /unknown destination/);
  });

  it('refuses a bad content-length', async () => {
    await expectError(await connected(s), 'SEND\ndestination:/topic/a\nreceipt:r3\ncontent-length:12x\n\nbody\0', /content-length "12x"/, 'r3');
    await expectError(await connected(s), 'SEND\ndestination:/topic/a\ncontent-length:2\n\nbody\0', /longer than its content-length/);
  });

  it('refuses an oversized body and too many or too large headers', async () => {
    await expectError(await connected(s), `SEND\ndestination:/topic/a\n\n${'x'.repeat(5000)}\0`, /exceeds the 4096-byte/);
    await expectError(await connected(s), 'SEND\ndestination:/topic/a\ncontent-length:5000\n\n', /5000 exceeds the 4096-byte body limit/);
    const many = Array.from({ length: 10 }, (_, i) => `h${i}:v`).join('\n');
    await expectError(await connected(s), `SEND\ndestination:/topic/a\n${many}\n\n\0`, /more than 8 headers/);
    await expectError(await connected(s), `SEND\ndestination:/topic/a\nbig:${'y'.repeat(2000)}\n\n\0`, /1024-byte limit/);
  });

  it('refuses invalid UTF-8 in headers', async () => {
    const frame = Buffer.concat([Buffer.from('SEND\ndestination:/topic/'), Buffer.from([0xff, 0xfe]), Buffer.from('\n\n\0')]);
    await expectError(await connected(s), frame, /not valid UTF-8/);
  });

  it('refuses a reused subscription id, a missing id and a bad ack mode', async () => {
    const c = await connected(s);
    c.send('SUBSCRIBE\nid:0\ndestination:/topic/a\nreceipt:ok\n\n\0');
    assert.equal(frameHeader(await c.next('RECEIPT'), 'receipt-id'), 'ok');
    await expectError(c, 'SUBSCRIBE\nid:0\ndestination:/topic/b\nreceipt:r4\n\n\0', /subscription id "0" is already in use/, 'r4');
    await expectError(await connected(s), 'SUBSCRIBE\ndestination:/topic/b\n\n\0', /needs an id header/);
    await expectError(await connected(s), 'SUBSCRIBE\nid:1\ndestination:/topic/b\nack:sometimes\n\n\0', /invalid ack mode "sometimes"/);
    await expectError(await connected(s), 'SUBSCRIBE\nid:1\ndestination:/app/x\n\n\0', /SEND to it, do not SUBSCRIBE/);
  });

  it('refuses ACK/NACK for unknown ids and UNSUBSCRIBE of unknown subscriptions', async () => {
    await expectError(await connected(s), 'ACK\nid:nope\nreceipt:r5\n\n\0', /ACK for unknown id "nope"/, 'r5');
    await expectError(await connected(s), 'NACK\nid:nope\n\n\0', /NACK for unknown id/);
    await expectError(await connected(s, '1.1'), 'ACK\nmessage-id:m1\nsubscription:s\n\n\0', /unknown message-id "m1"/);
    await expectError(await connected(s), 'UNSUBSCRIBE\nid:ghost\n\n\0', /no subscription with id "ghost"/);
  });

  it('refuses unknown transactions and a doubly begun one', async () => {
    await expectError(await connected(s), 'COMMIT\ntransaction:t9\n\n\0', /unknown transaction "t9"/);
    await expectError(await connected(s), 'SEND\ndestination:/topic/a\ntransaction:t8\n\n\0', /unknown transaction "t8"/);
    const c = await connected(s);
    c.send('BEGIN\ntransaction:t1\n\n\0');
    await expectError(c, 'BEGIN\ntransaction:t1\n\n\0', /already open/);
  });

  it('stays healthy for everyone else after all of that', async () => {
    const a = await connected(s);
    const b = await connected(s);
    b.send('SUBSCRIBE\nid:1\ndestination:/topic/health\nreceipt:ok\n\n\0');
    await b.next('RECEIPT');
    const bad = await connected(s);
    bad.send('GARBAGE\n\n\0');
    a.send('SEND\ndestination:/topic/health\n\nalive\0');
    assert.equal((await b.next('MESSAGE')).body.toString(), 'alive');
    await bad.closedPromise;
    assert.equal((await api(s.url, 'GET', '/healthz')).status, 200);
    a.close();
    b.close();
  });
});

describe('STOMP frames over TCP: delivery', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ maxUnackedPerSubscription: 2 });
  });
  after(() => s.stop());

  async function sub(c: RawStomp, id: string, dest: string, ack = 'auto'): Promise<void> {
    c.send(`SUBSCRIBE\nid:${id}\ndestination:${dest}\nack:${ack}\nreceipt:sub-${id}\n\n\0`);
    await c.next('RECEIPT');
  }

  it('matches * and # wildcards on dot-separated topics', async () => {
    const p = await connected(s);
    const c = await connected(s);
    await sub(c, 'star', '/topic/news.*');
    await sub(c, 'hash', '/topic/news.#');
    p.send('SEND\ndestination:/topic/news.sport\n\n1\0');
    p.send('SEND\ndestination:/topic/news.sport.football\n\n2\0');
    const got = [await c.next('MESSAGE'), await c.next('MESSAGE'), await c.next('MESSAGE')];
    const pairs = got.map((f) => `${frameHeader(f, 'subscription')}:${f.body.toString()}`).sort();
    assert.deepEqual(pairs, ['hash:1', 'hash:2', 'star:1']);
    assert.equal(frameHeader(got[0]!, 'destination')!.startsWith('/topic/news.sport'), true);
    p.close();
    c.close();
  });

  it('passes binary bodies with NULs and custom headers through unchanged', async () => {
    const p = await connected(s);
    const c = await connected(s);
    await sub(c, '1', '/topic/bin');
    const body = Buffer.from([0, 1, 2, 0, 255]);
    p.send(Buffer.concat([Buffer.from('SEND\ndestination:/topic/bin\ncontent-type:application/octet-stream\nx-trace:abc\\cdef\ncontent-length:5\n\n'), body, Buffer.from([0])]));
    const m = await c.next('MESSAGE');
    assert.deepEqual(m.body, body);
    assert.equal(frameHeader(m, 'content-type'), 'application/octet-stream');
    assert.equal(frameHeader(m, 'x-trace'), 'abc:def');
    p.close();
    c.close();
  });

  it('pauses a client-ack subscription at its window and resumes on ACK (cumulative in client mode)', async () => {
    const p = await connected(s);
    const c = await connected(s);
    await sub(c, 'w', '/topic/window', 'client');
    for (let i = 1; i <= 5; i++) p.send(`SEND\ndestination:/topic/window\n\n${i}\0`);
    const m1 = await c.next('MESSAGE');
    const m2 = await c.next('MESSAGE');
    await assert.rejects(c.next('MESSAGE', 300), /timed out/);
    c.send(`ACK\nid:${frameHeader(m2, 'ack')}\n\n\0`); // acks 1 and 2
    const m3 = await c.next('MESSAGE');
    const m4 = await c.next('MESSAGE');
    assert.deepEqual([m1, m2, m3, m4].map((m) => m.body.toString()), ['1', '2', '3', '4']);
    c.send(`ACK\nid:${frameHeader(m3, 'ack')}\n\n\0`);
    assert.equal((await c.next('MESSAGE')).body.toString(), '5');
    p.close();
    c.close();
  });

  it('shares a queue between competing consumers, each message once', async () => {
    const p = await connected(s);
    const a = await connected(s);
    const b = await connected(s);
    await sub(a, 'q', '/queue/work');
    await sub(b, 'q', '/queue/work');
    for (let i = 0; i < 20; i++) p.send(`SEND\ndestination:/queue/work\nreceipt:s${i}\n\njob-${i}\0`);
    for (let i = 0; i < 20; i++) await p.next('RECEIPT');
    const seen: string[] = [];
    const counts = [0, 0];
    const deadline = Date.now() + 5000;
    while (seen.length < 20 && Date.now() < deadline) {
      for (const [i, c] of [a, b].entries()) {
        while (c.frames.length) {
          const f = c.frames.shift()!;
          if (f.command === 'MESSAGE') {
            seen.push(f.body.toString());
            counts[i]!++;
          }
        }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(seen.sort(), Array.from({ length: 20 }, (_, i) => `job-${i}`).sort());
    assert.ok(counts[0]! > 0 && counts[1]! > 0, `both consumers got work: ${counts.join('/')}`);
    for (const c of [p, a, b]) c.close();
  });

  it('redelivers a NACKed queue message and one left unacked by a consumer that went away', async () => {
    const p = await connected(s);
    const a = await connected(s);
    await sub(a, 'q', '/queue/retry', 'client-individual');
    p.send('SEND\ndestination:/queue/retry\nreceipt:s\n\nfragile\0');
    await p.next('RECEIPT');
    const first = await a.next('MESSAGE');
    assert.equal(frameHeader(first, 'redelivered'), undefined);
    a.send(`NACK\nid:${frameHeader(first, 'ack')}\n\n\0`);
    const again = await a.next('MESSAGE');
    assert.equal(again.body.toString(), 'fragile');
    assert.equal(frameHeader(again, 'redelivered'), 'true');
    assert.equal(frameHeader(again, 'message-id'), frameHeader(first, 'message-id'));
    a.close();
    await a.closedPromise;
    const b = await connected(s);
    await sub(b, 'q', '/queue/retry', 'client-individual');
    const third = await b.next('MESSAGE');
    assert.equal(third.body.toString(), 'fragile');
    assert.equal(frameHeader(third, 'redelivered'), 'true');
    b.send(`ACK\nid:${frameHeader(third, 'ack')}\nreceipt:done\n\n\0`);
    await b.next('RECEIPT');
    assert.equal(s.server.ctx.broker.queueStats('retry')?.inflight, 0);
    p.close();
    b.close();
  });

  it('hands an unacknowledged mailbox message to the user\'s next subscriber, marked redelivered', async () => {
    const p = await connected(s);
    const a = await connected(s);
    await sub(a, 'in', '/user/queue/inbox', 'client-individual');
    p.send('SEND\ndestination:/user/admin/queue/inbox\nreceipt:s\n\nfor admin\0');
    await p.next('RECEIPT');
    assert.equal((await a.next('MESSAGE')).body.toString(), 'for admin');
    a.close();
    await a.closedPromise;
    // The server has seen the close once the session left the registry.
    const deadline = Date.now() + 5000;
    while (s.server.ctx.sessions.size > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const b = await connected(s);
    await sub(b, 'in', '/user/queue/inbox', 'client-individual');
    const m = await b.next('MESSAGE');
    assert.equal(m.body.toString(), 'for admin');
    assert.equal(frameHeader(m, 'redelivered'), 'true');
    assert.equal(frameHeader(m, 'destination'), '/user/queue/inbox');
    for (const c of [p, b]) c.close();
  });

  it('applies a transaction at COMMIT and drops it at ABORT', async () => {
    const p = await connected(s);
    const c = await connected(s);
    await sub(c, '1', '/topic/tx');
    p.send('BEGIN\ntransaction:t1\n\n\0');
    p.send('SEND\ndestination:/topic/tx\ntransaction:t1\n\ncommitted\0');
    p.send('BEGIN\ntransaction:t2\n\n\0');
    p.send('SEND\ndestination:/topic/tx\ntransaction:t2\n\naborted\0');
    p.send('ABORT\ntransaction:t2\n\n\0');
    await assert.rejects(c.next('MESSAGE', 200), /timed out/);
    p.send('COMMIT\ntransaction:t1\nreceipt:c\n\n\0');
    await p.next('RECEIPT');
    assert.equal((await c.next('MESSAGE')).body.toString(), 'committed');
    await assert.rejects(c.next('MESSAGE', 200), /timed out/);
    p.close();
    c.close();
  });

  it('speaks STOMP 1.0: no escaping, message-id acks, id defaults to the destination', async () => {
    const p = await connected(s);
    const c = await connected(s, '1.0');
    c.send('SUBSCRIBE\ndestination:/topic/old\nack:client\nreceipt:r\n\n\0');
    await c.next('RECEIPT');
    p.send('SEND\ndestination:/topic/old\nnote:a\\cb\n\nv1\0');
    const m = await c.next('MESSAGE');
    assert.equal(frameHeader(m, 'subscription'), '/topic/old');
    assert.equal(frameHeader(m, 'ack'), undefined);
    c.send(`ACK\nmessage-id:${frameHeader(m, 'message-id')}\nreceipt:a\n\n\0`);
    assert.equal(frameHeader(await c.next('RECEIPT'), 'receipt-id'), 'a');
    p.close();
    c.close();
  });

  it('answers DISCONNECT with its RECEIPT and closes', async () => {
    const c = await connected(s);
    c.send('DISCONNECT\nreceipt:bye\n\n\0');
    assert.equal(frameHeader(await c.next('RECEIPT'), 'receipt-id'), 'bye');
    await c.closedPromise;
  });
});

describe('STOMP heart-beats and durability', () => {
  it('sends heart-beats and closes a client silent past the negotiated interval plus grace', async () => {
    const s = await startServer({ stompHeartbeatMs: 200 });
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    const f = await c.connect({ ...ADMIN, 'heart-beat': '200,200' });
    assert.equal(frameHeader(f, 'heart-beat'), '200,200');
    const err = await c.next('ERROR', 6000);
    assert.equal(frameHeader(err, 'message'), 'heart-beat timeout');
    assert.ok(c.heartbeats >= 2, `server beat ${c.heartbeats} times`);
    await c.closedPromise;
    await s.stop();
  });

  it('keeps a queue message sent with a receipt across a restart', async () => {
    const dir = tempDir();
    const s1 = await startServer({}, undefined, dir);
    const p = await connected(s1);
    p.send('SEND\ndestination:/queue/durable\nreceipt:stored\n\nsurvivor\0');
    await p.next('RECEIPT');
    await s1.server.stop();
    const s2 = await startServer({}, undefined, dir);
    const c = await connected(s2);
    c.send('SUBSCRIBE\nid:1\ndestination:/queue/durable\n\n\0');
    assert.equal((await c.next('MESSAGE')).body.toString(), 'survivor');
    c.close();
    await s2.stop();
  });

  it('sends UTF-8 frames as WebSocket text and others as binary, one frame per message', async () => {
    const s = await startServer();
    const token = await login(s.url);
    const c = await RawStomp.ws(wsUrl(s.url, '/v1/ws?__token=' + token), ['v12.stomp']);
    assert.equal(c.socket.protocol, 'v12.stomp');
    c.send('CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0');
    await c.next('CONNECTED');
    c.send('SUBSCRIBE\nid:1\ndestination:/topic/t\n\n\0');
    c.send('SEND\ndestination:/topic/t\n\ntext ✓\0');
    c.send(Buffer.concat([Buffer.from('SEND\ndestination:/topic/t\ncontent-length:2\n\n'), Buffer.from([0xff, 0x00]), Buffer.from([0])]));
    await c.next('MESSAGE');
    await c.next('MESSAGE');
    const msgs = c.messages.filter((m) => m.data.subarray(0, 7).toString() === 'MESSAGE');
    assert.deepEqual(msgs.map((m) => m.isBinary), [false, true]);
    for (const m of msgs) assert.equal(m.data.indexOf(0) >= 0 && m.data[m.data.length - 1], 0);
    c.close();
    await s.stop();
  });
});

describe('STOMP limits: the client pays, not the server', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ maxConnectionsPerUser: 3, maxSubscriptionsPerConnection: 2, slowConsumerBytes: 65_536, publishRatePerSecond: 20 });
  });
  after(() => s.stop());

  it('refuses a connection over maxConnectionsPerUser', async () => {
    const open = [await connected(s), await connected(s), await connected(s)];
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    const f = await c.connect(ADMIN);
    assert.equal(f.command, 'ERROR');
    assert.equal(frameHeader(f, 'message'), 'too many connections');
    assert.match(f.body.toString(), /already has 3 connections/);
    for (const o of open) o.close();
    await Promise.all(open.map((o) => o.closedPromise));
  });

  it('refuses a subscription over maxSubscriptionsPerConnection', async () => {
    await noSessions(s);
    const c = await connected(s);
    c.send('SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0');
    c.send('SUBSCRIBE\nid:2\ndestination:/topic/b\n\n\0');
    await expectError(c, 'SUBSCRIBE\nid:3\ndestination:/topic/c\n\n\0', /too many subscriptions/);
  });

  it('answers SEND to an /app destination with no thread on the sender\'s error queue', async () => {
    await noSessions(s);
    const c = await connected(s);
    c.send('SUBSCRIBE\nid:e\ndestination:/user/queue/errors\n\n\0');
    c.send('SEND\ndestination:/app/nothing.here\nreceipt:r\n\nx\0');
    const m = await c.next('MESSAGE');
    assert.match(m.body.toString(), /message is not valid JSON|no thread/);
    await c.next('RECEIPT');
    c.close();
    await c.closedPromise;
  });

  it('disconnects a subscriber that stops reading, and only it', async () => {
    await noSessions(s);
    const port = s.server.address('stomp').port;
    const { connect: tcpConnect } = await import('node:net');
    // A subscriber that never reads its socket.
    const slow = tcpConnect(port, '127.0.0.1');
    await new Promise((r) => slow.once('connect', r));
    slow.write(`CONNECT\naccept-version:1.2\nlogin:admin\npasscode:${ADMIN_PASSWORD}\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/flood\nreceipt:ok\n\n\0`);
    await new Promise((r) => setTimeout(r, 200));
    slow.pause();
    const healthy = await connected(s);
    healthy.send('SUBSCRIBE\nid:1\ndestination:/topic/flood\nreceipt:ok\n\n\0');
    await healthy.next('RECEIPT');
    const p = await connected(s);
    const chunk = 'z'.repeat(60_000);
    let gone = false;
    const closed = new Promise<void>((r) => slow.once('close', () => ((gone = true), r())));
    for (let i = 0; i < 100 && !gone; i++) {
      p.send(`SEND\ndestination:/topic/flood\n\n${chunk}\0`);
      await healthy.next('MESSAGE');
    }
    slow.resume();
    let text = '';
    slow.on('data', (d: Buffer) => (text += d.toString('latin1')));
    await closed;
    assert.match(text, /message:slow consumer/);
    assert.equal(healthy.closed, false, 'the reading subscriber is unaffected');
    p.close();
    healthy.close();
  });

  it('slows a fast publisher down without losing its messages', async () => {
    await noSessions(s);
    const c = await connected(s);
    c.send('SUBSCRIBE\nid:1\ndestination:/topic/rate\nreceipt:ok\n\n\0');
    await c.next('RECEIPT');
    const p = await connected(s);
    const started = Date.now();
    for (let i = 0; i < 40; i++) p.send(`SEND\ndestination:/topic/rate\n\n${i}\0`);
    const bodies: string[] = [];
    for (let i = 0; i < 40; i++) bodies.push((await c.next('MESSAGE', 10_000)).body.toString());
    assert.deepEqual(bodies, Array.from({ length: 40 }, (_, i) => String(i)));
    assert.ok(Date.now() - started >= 900, `${Date.now() - started} ms: ` + 'a 20/s limit holds 40 messages back for about a second');
    p.close();
    c.close();
  });
});
