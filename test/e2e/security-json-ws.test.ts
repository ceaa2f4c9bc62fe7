/**
 * Attacks on the JSON WebSocket (`/websocket/{token}`), each against a real
 * server: JSON nested deep enough to overflow the stack, publishing to
 * topics only the server writes, and a client that never acknowledges and
 * so pins the messages sent to it.
 */
import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { JsonClient, type JsonEvent } from '../helpers/json-ws.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';

const wsBase = (srv: TestServer): string => srv.url.replace(/^http/, 'ws') + '/websocket/';

describe('JSON WebSocket: JSON nested 100,000 deep', () => {
  let srv: TestServer;
  let admin: string;
  const lines: string[] = [];
  before(async () => {
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    srv = await startServer({}, undefined, undefined, pino({ level: 'trace' }, stream));
    admin = await login(srv.url);
  });
  after(() => srv.stop());

  it('is answered with a bad_json error naming the limit, logs no error, and the connection goes on', async () => {
    const c = await JsonClient.open(wsBase(srv) + admin);
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    c.send(`{"action":"publish","topic":"deep.json","data":${deep}}`);
    const err = await c.next('error');
    assert.deepEqual(err.data, { code: 'bad_json', message: 'message is not accepted: JSON nested deeper than 100 levels' });
    c.send(`{"action":"subscribe","topic":"deep.json","x":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`);
    assert.equal(((await c.next('error')).data as { code: string }).code, 'bad_json');
    // 100 levels are fine, and the value arrives intact.
    c.send({ action: 'subscribe', topic: 'deep.json' });
    await c.next('ok');
    const ok = '['.repeat(99) + '1' + ']'.repeat(99);
    c.send(`{"action":"publish","topic":"deep.json","data":${ok}}`);
    const got = await c.next('topic');
    assert.equal(JSON.stringify(got.data), ok);
    await c.sync();
    c.close();
    assert.deepEqual(lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50), [], 'no error-level log');
  });
});

describe('JSON WebSocket: topics only the server writes', () => {
  let srv: TestServer;
  let admin: string;
  let member: string;
  let stranger: string;
  before(async () => {
    srv = await startServer({ sysIntervalSeconds: 0 });
    admin = await login(srv.url);
    for (const name of ['member1', 'stranger1']) await api(srv.url, 'POST', '/api/users', { token: admin, body: { name, password: `${name}-password` } });
    const t = await api(srv.url, 'POST', '/api/v1/thread', { token: admin, body: { thread: 'org1/visitor/v1', members: [{ user: 'member1', role: 'visitor' }] } });
    assert.equal(t.status, 200, t.body.message);
    member = await login(srv.url, 'member1', 'member1-password');
    stranger = await login(srv.url, 'stranger1', 'stranger1-password');
  });
  after(() => srv.stop());

  it('a plain user cannot subscribe to $SYS (statistics are for staff), as in MQTT', async () => {
    const c = await JsonClient.open(wsBase(srv) + stranger);
    c.send({ action: 'subscribe', topic: '$SYS.#' });
    const err = await c.next('error');
    assert.equal((err.data as { code: string }).code, 'not_allowed');
    assert.match((err.data as { message: string }).message, /\$SYS statistics are for admins and services/);
    const staff = await JsonClient.open(wsBase(srv) + admin);
    staff.send({ action: 'subscribe', topic: '$SYS.#' });
    assert.equal(((await staff.next('ok')).data as { action: string }).action, 'subscribe');
    c.close();
    staff.close();
  });

  it('a publish to a chat thread or to $SYS is refused with not_allowed; the admin on $SYS/# and the thread member get nothing forged', async () => {
    const sys = await JsonClient.open(wsBase(srv) + admin);
    sys.send({ action: 'subscribe', topic: '$SYS.#' });
    await sys.next('ok');
    const inThread = await JsonClient.open(wsBase(srv) + member);
    inThread.send({ action: 'subscribe', topic: 'org1.visitor.v1' });
    await inThread.next('ok');

    const forged = { uid: 'forged-1', type: 'TEXT', content: 'forged', status: 'SUCCESS', user: { uid: 'member1' } };
    // A stranger, a member and an admin: nobody may write a thread's topic directly, nor a $ topic.
    for (const token of [stranger, member, admin]) {
      const c = await JsonClient.open(wsBase(srv) + token);
      c.send({ action: 'publish', topic: 'org1.visitor.v1', data: forged });
      const thread = await c.next('error');
      assert.equal((thread.data as { code: string }).code, 'not_allowed');
      assert.match((thread.data as { message: string }).message, /org1\.visitor\.v1 is a chat thread: send to \/app\/org1\.visitor\.v1/);
      c.send({ action: 'publish', topic: '$SYS.broker.version', data: 'forged 9.9.9' });
      const sysErr = await c.next('error');
      assert.equal((sysErr.data as { code: string }).code, 'not_allowed');
      assert.match((sysErr.data as { message: string }).message, /written by the server only/);
      c.close();
    }
    // The member's subscription is live: a message through the thread service arrives.
    const sent = await api(srv.url, 'POST', '/api/v1/message/send', { token: member, body: { uid: 'real-1', type: 'TEXT', content: 'real', thread: { topic: 'org1/visitor/v1' } } });
    assert.equal(sent.body.code, 200, sent.body.message);
    assert.match(JSON.stringify((await inThread.next('topic')).data), /real-1/);
    await sys.sync();
    await inThread.sync();
    const forgedSeen = (events: JsonEvent[]): JsonEvent[] => events.filter((e) => /forged/.test(JSON.stringify(e)));
    assert.deepEqual(forgedSeen(sys.events), []);
    assert.deepEqual(forgedSeen(inThread.events), []);
    sys.close();
    inThread.close();
  });
});

describe('JSON WebSocket: a client that never acknowledges pins at most maxHeldBytesPerConnection', () => {
  const LIMIT = 1024 * 1024;
  const CONTENT = 64 * 1024;
  let srv: TestServer;
  let admin: string;
  before(async () => {
    srv = await startServer({ maxHeldBytesPerConnection: LIMIT, messageMaxContentBytes: 2 * CONTENT });
    admin = await login(srv.url);
    await api(srv.url, 'POST', '/api/users', { token: admin, body: { name: 'hoarder', password: 'hoarder-password' } });
  });
  after(() => srv.stop());

  it('is cut with slow_consumer naming the limit, after at most half the budget was in flight', async () => {
    const token = await login(srv.url, 'hoarder', 'hoarder-password');
    // A raw client that reads everything and acknowledges nothing.
    const ws = new WebSocket(wsBase(srv) + token);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    let messages = 0;
    let messageBytes = 0;
    let error: { code: string; message: string } | undefined;
    ws.on('message', (d: Buffer) => {
      const e = JSON.parse(d.toString()) as JsonEvent;
      if (e.event === 'message') {
        messages++;
        messageBytes += d.length;
      } else if (e.event === 'error') error = e.data as { code: string; message: string };
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));

    const content = 'x'.repeat(CONTENT);
    const heapBefore = process.memoryUsage().heapUsed;
    let sent = 0;
    // 6.4 MiB, all of it in flight without a byte bound (the message window allows 1,000 messages).
    for (; sent < 100 && ws.readyState === WebSocket.OPEN; sent++) {
      const r = await api(srv.url, 'POST', '/api/message/sendMessage', { token: admin, body: { content, receiver: ['hoarder'] } });
      assert.equal(r.status, 200, r.body.message);
    }
    const code = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r(`still open after ${sent} messages`), 5000))]);
    assert.equal(code, 1008);
    assert.equal(error?.code, 'slow_consumer');
    assert.match(error?.message ?? '', /the limit is 1048576, maxHeldBytesPerConnection/);
    // In flight: at most half the budget plus the one message that crossed it.
    assert.ok(messageBytes <= LIMIT / 2 + CONTENT + 4096, `${messageBytes} bytes were sent unacknowledged`);
    // Cut once in-flight plus waiting bytes passed the budget: a couple of dozen messages, not a thousand.
    assert.ok(sent <= Math.ceil(LIMIT / CONTENT) + 4, `cut after ${sent} messages`);
    const hoarderId = (await api<{ userId: string }>(srv.url, 'GET', '/v1/me', { token })).body.data.userId;
    assert.equal(srv.server.ctx.sessions.ofUser(hoarderId).size, 0, 'the connection is gone');
    // The messages were not lost: they wait in the store for the next connection.
    const again = await JsonClient.open(wsBase(srv) + (await login(srv.url, 'hoarder', 'hoarder-password')));
    const first = await again.next('message');
    again.send({ action: 'ack', id: (first.data as { id: string }).id });
    again.close();
    console.log(`cut after ${sent} messages, ${messages} in flight (${messageBytes} bytes); heap grew ${Math.round((process.memoryUsage().heapUsed - heapBefore) / 1024)} KiB`);
  });
});
