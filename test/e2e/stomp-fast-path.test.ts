/**
 * The STOMP publish fast path on a real server over WebSocket (`/stomp`):
 * SENDs carried out as soon as they are parsed, and destinations remembered
 * per connection, must keep the order of frames, stop at the first bad one,
 * and see every change of the access rules.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { api, ADMIN_PASSWORD, login, startServer, tempDir, type TestServer } from '../helpers/server.js';
import { frameHeader, RawStomp, wsUrl } from '../helpers/stomp.js';

const ALLOW_ROOM = [
  { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
  { effect: 'allow', action: 'all', topic: 'room/#', who: 'user' },
];
const ALLOW_LOBBY = [
  { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
  { effect: 'allow', action: 'all', topic: 'lobby/#', who: 'user' },
];

const send = (dest: string, body: string, extra = ''): string => `SEND\ndestination:${dest}\n${extra}content-length:${Buffer.byteLength(body)}\n\n${body}\0`;

describe('STOMP publish fast path over WebSocket', () => {
  let s: TestServer;
  let aclFile: string;
  const open: RawStomp[] = [];

  before(async () => {
    const dir = tempDir('herald-stomp-fast-');
    aclFile = join(dir, 'acl.json');
    writeFileSync(aclFile, JSON.stringify(ALLOW_ROOM));
    s = await startServer({ aclFile }, undefined, dir);
    const admin = await login(s.url);
    assert.equal((await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'alice', password: 'alice-password', role: 'user' } })).status, 200);
  });
  after(async () => {
    for (const c of open) c.close();
    await s.stop();
  });

  async function client(login = 'admin', passcode = ADMIN_PASSWORD): Promise<RawStomp> {
    const c = await RawStomp.ws(wsUrl(s.url, '/stomp'));
    open.push(c);
    const f = await c.connect({ login, passcode });
    assert.equal(f.command, 'CONNECTED', f.body.toString());
    return c;
  }

  async function subscribed(c: RawStomp, dest: string, id = 'sub'): Promise<void> {
    c.send(`SUBSCRIBE\nid:${id}\ndestination:${dest}\nreceipt:r-${id}\n\n\0`);
    assert.equal(frameHeader(await c.next('RECEIPT'), 'receipt-id'), `r-${id}`);
  }

  /** The bodies of the next `n` frames, whatever their command, as `COMMAND:body` (RECEIPT as `RECEIPT:<id>`). */
  async function nextFrames(c: RawStomp, n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const f = await c.next();
      out.push(f.command === 'RECEIPT' ? `RECEIPT:${frameHeader(f, 'receipt-id')}` : `${f.command}:${f.body.toString()}`);
    }
    return out;
  }

  it('carries out many SENDs of one WebSocket message in order, a RECEIPT after its own SEND and before the next one', async () => {
    const c = await client();
    await subscribed(c, '/topic/fast.order');
    c.send(send('/topic/fast.order', 'one') + send('/topic/fast.order', 'two', 'receipt:after-two\n') + send('/topic/fast.order', 'three') + send('/topic/fast.order', 'four'));
    assert.deepEqual(await nextFrames(c, 5), ['MESSAGE:one', 'MESSAGE:two', 'RECEIPT:after-two', 'MESSAGE:three', 'MESSAGE:four']);
    for (let i = 0; i < 3; i++) c.send(send('/topic/fast.order', `again-${i}`));
    assert.deepEqual(await nextFrames(c, 3), ['MESSAGE:again-0', 'MESSAGE:again-1', 'MESSAGE:again-2'], 'the remembered destination still delivers');
  });

  it('gives each kind of subscriber its own MESSAGE frame when one message goes to many (ids, versions, ack modes, TCP and WebSocket)', async () => {
    const kinds = [
      { version: '1.2', id: 'x', ack: 'auto' },
      { version: '1.2', id: 'x', ack: 'auto' },
      { version: '1.2', id: 'y', ack: 'auto' },
      { version: '1.1', id: 'x', ack: 'auto' },
      { version: '1.2', id: 'x', ack: 'client-individual' },
      { version: '1.2', id: 'x', ack: 'auto', tcp: true },
      { version: '1.2', id: 'z', ack: 'client' },
      { version: '1.2', id: 'x', ack: 'auto' },
    ];
    const subs: RawStomp[] = [];
    for (const k of kinds) {
      const c = k.tcp ? await RawStomp.tcp(s.server.address('stomp').port) : await RawStomp.ws(wsUrl(s.url, '/stomp'), [`v${k.version.replace('.', '')}.stomp`]);
      open.push(c);
      assert.equal((await c.connect({ login: 'admin', passcode: ADMIN_PASSWORD }, k.version)).command, 'CONNECTED');
      c.send(`SUBSCRIBE\nid:${k.id}\ndestination:/topic/fast.kinds\nack:${k.ack}\nreceipt:s\n\n\0`);
      await c.next('RECEIPT');
      subs.push(c);
    }
    const pub = await client();
    pub.send(send('/topic/fast.kinds', 'first') + send('/topic/fast.kinds', 'second'));
    for (const [i, k] of kinds.entries()) {
      for (const body of ['first', 'second']) {
        const m = await subs[i]!.next('MESSAGE');
        assert.equal(m.body.toString(), body);
        assert.equal(frameHeader(m, 'subscription'), k.id, `subscriber ${i}`);
        assert.equal(frameHeader(m, 'destination'), '/topic/fast.kinds');
        const ack = frameHeader(m, 'ack');
        if (k.ack === 'auto' || k.version !== '1.2') assert.equal(ack, undefined, `subscriber ${i}: no ack header`);
        else assert.equal(ack, `${frameHeader(m, 'message-id')}:${k.id}`, `subscriber ${i}`);
      }
    }
  });

  it('stops at a malformed frame: the SENDs before it are delivered, the ERROR names the fault, nothing after it is carried out', async () => {
    const watcher = await client();
    await subscribed(watcher, '/topic/fast.malformed');
    const c = await client();
    c.send(send('/topic/fast.malformed', 'before') + 'SEND\ndestination:/topic/fast.malformed\nno-colon-here\n\nbad\0' + send('/topic/fast.malformed', 'after'));
    const err = await c.next('ERROR');
    assert.match(frameHeader(err, 'message')!, /has no colon/);
    await c.closedPromise;
    // A marker published afterwards: had "after" been carried out, it would have come first.
    assert.equal((await api(s.url, 'POST', '/api/publish', { token: await login(s.url), body: { destination: '/topic/fast.malformed', body: 'marker' } })).status, 200);
    assert.deepEqual(await nextFrames(watcher, 2), ['MESSAGE:before', 'MESSAGE:marker']);
  });

  it('refuses a bad destination in the middle of a message with an ERROR carrying its receipt, and carries out nothing after it', async () => {
    const watcher = await client();
    await subscribed(watcher, '/topic/fast.bad');
    for (const [bad, re] of [
      ['/topic/fast.*', /invalid destination/],
      ['/topic/', /invalid destination/],
      ['/nowhere/x', /invalid destination/],
    ] as const) {
      const c = await client();
      c.send(send('/topic/fast.bad', `ok ${bad}`) + send(bad, 'refused', 'receipt:bad-one\n') + send('/topic/fast.bad', `after ${bad}`));
      const err = await c.next('ERROR');
      assert.match(`${frameHeader(err, 'message')} ${err.body.toString()}`, re);
      assert.equal(frameHeader(err, 'receipt-id'), 'bad-one');
      await c.closedPromise;
      assert.deepEqual(await nextFrames(watcher, 1), [`MESSAGE:ok ${bad}`]);
    }
    assert.equal((await api(s.url, 'POST', '/api/publish', { token: await login(s.url), body: { destination: '/topic/fast.bad', body: 'marker' } })).status, 200);
    assert.deepEqual(await nextFrames(watcher, 1), ['MESSAGE:marker'], 'no SEND after a refused one was carried out');
  });

  it('refuses a server topic ($SYS), though its name is a valid topic destination', async () => {
    const c = await client();
    c.send(send('/topic/$SYS.x', 'no'));
    const err = await c.next('ERROR');
    assert.match(`${frameHeader(err, 'message')} ${err.body.toString()}`, /not allowed.*written by the server only/s);
    await c.closedPromise;
  });

  it('sees a reload of the access rules: a destination allowed and remembered before is refused after', async () => {
    const watcher = await client();
    await subscribed(watcher, '/topic/room.b');
    const alice = await client('alice', 'alice-password');
    alice.send(send('/topic/room.b', 'allowed', 'receipt:r1\n'));
    assert.equal(frameHeader(await alice.next('RECEIPT'), 'receipt-id'), 'r1');
    alice.send(send('/topic/room.b', 'allowed again'));
    assert.deepEqual(await nextFrames(watcher, 2), ['MESSAGE:allowed', 'MESSAGE:allowed again']);

    writeFileSync(aclFile, JSON.stringify(ALLOW_LOBBY));
    const report = await s.server.reload();
    assert.equal(report.acl.ok, true);

    alice.send(send('/topic/room.b', 'refused now', 'receipt:r2\n'));
    const err = await alice.next('ERROR');
    assert.match(`${frameHeader(err, 'message')} ${err.body.toString()}`, /not allowed.*do not let "alice" publish to \/topic\/room\.b/s);
    assert.equal(frameHeader(err, 'receipt-id'), 'r2');
    await alice.closedPromise;

    const again = await client('alice', 'alice-password');
    again.send(send('/topic/lobby.x', 'fine', 'receipt:r3\n'));
    assert.equal(frameHeader(await again.next('RECEIPT'), 'receipt-id'), 'r3');
    assert.equal((await api(s.url, 'POST', '/api/publish', { token: await login(s.url), body: { destination: '/topic/room.b', body: 'marker' } })).status, 200);
    assert.deepEqual(await nextFrames(watcher, 1), ['MESSAGE:marker'], 'the refused SEND was not delivered');

    writeFileSync(aclFile, JSON.stringify(ALLOW_ROOM));
    assert.equal((await s.server.reload()).acl.ok, true);
  });
});

describe('STOMP publish rate over WebSocket: SENDs that must wait keep their order', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ publishRatePerSecond: 3 });
  });
  after(async () => {
    await s.stop();
  });

  it('delivers SENDs past the rate later, in order, with the frames behind them', async () => {
    const c = await RawStomp.ws(wsUrl(s.url, '/stomp'));
    assert.equal((await c.connect({ login: 'admin', passcode: ADMIN_PASSWORD })).command, 'CONNECTED');
    c.send('SUBSCRIBE\nid:s\ndestination:/topic/rate.x\nreceipt:sub\n\n\0');
    await c.next('RECEIPT');
    c.send([1, 2, 3, 4, 5].map((i) => send('/topic/rate.x', `m${i}`)).join('') + 'SEND\ndestination:/topic/rate.x\nreceipt:last\n\nm6\0');
    const got: string[] = [];
    for (let i = 0; i < 7; i++) {
      const f = await c.next(undefined, 10_000);
      got.push(f.command === 'RECEIPT' ? 'RECEIPT' : f.body.toString());
    }
    assert.deepEqual(got, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'RECEIPT']);
    c.close();
  });
});
