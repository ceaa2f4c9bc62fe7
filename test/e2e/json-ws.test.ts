/**
 * The JSON WebSocket protocol (`/websocket/{token}`, the message service's
 * client profile in docs/clients.md): the handshake, error events for bad
 * input, topics, token expiry, and the acknowledgement window. The message
 * service it carries is tested in messages.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { WebSocket } from 'ws';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { JsonClient, jsonUrl, type MessageData } from '../helpers/json-ws.js';
import { sendMessage as send } from '../helpers/messages.js';

describe('JSON WebSocket: handshake and bad input', () => {
  const clock = new ManualClock(Date.now());
  let s: TestServer;
  let token: string;
  before(async () => {
    s = await startServer({}, clock);
    token = await login(s.url);
  });
  after(() => s.stop());

  it('refuses a bad or missing token at the handshake with 401', async () => {
    for (const path of ['/websocket/AAAAAAAAAAAAAAAAAAAAAA', '/websocket/']) {
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(s.url.replace(/^http/, 'ws') + path);
        ws.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => resolve(101));
        ws.on('error', () => undefined);
      });
      assert.equal(status, 401, path);
    }
  });

  it('answers every malformed message with an error event and stays up', async () => {
    const ws = await JsonClient.open(jsonUrl(s, token));
    const cases: [unknown, string, RegExp][] = [
      ['{not json', 'bad_json', /not valid JSON/],
      ['[1,2]', 'bad_request', /JSON object/],
      [{ hello: 1 }, 'bad_request', /no "action"/],
      [{ action: 'dance' }, 'unknown_action', /unknown action "dance"/],
      [{ action: 'ack' }, 'bad_request', /ack needs the message "id"/],
      [{ action: 'ack', id: '999999' }, 'unknown_message', /no message with id 999999/],
      [{ action: 'read', id: { x: 1 } }, 'bad_request', /read needs the message "id"/],
      [{ action: 'subscribe', topic: 'a.#.b' }, 'bad_request', /"#" must be/],
      [{ action: 'subscribe' }, 'bad_request', /"topic" must be a non-empty string/],
      [{ action: 'unsubscribe', topic: 'never.subscribed' }, 'bad_request', /not subscribed/],
      [{ action: 'publish', topic: 'a.*', data: 1 }, 'bad_request', /cannot hold wildcards/],
      [{ action: 'publish', topic: 'a.b' }, 'bad_request', /publish needs "data"/],
    ];
    for (const [msg, code, re] of cases) {
      ws.send(msg);
      const e = await ws.next('error');
      const d = e.data as { code: string; message: string };
      assert.equal(d.code, code, JSON.stringify(msg));
      assert.match(d.message, re);
    }
    ws.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.match(((await ws.next('error')).data as { message: string }).message, /not binary/);
    await ws.sync();
    assert.equal(ws.ws.readyState, WebSocket.OPEN);
    ws.close();
  });

  it('publishes and receives topics, and passes JSON data inline', async () => {
    const a = await JsonClient.open(jsonUrl(s, token));
    const b = await JsonClient.open(jsonUrl(s, token));
    b.send({ action: 'subscribe', topic: 'scores.*' });
    await b.next('ok');
    a.send({ action: 'publish', topic: 'scores.game1', data: { home: 2, away: 1 } });
    a.send({ action: 'publish', topic: 'scores.game2', data: 'kick-off' });
    const e1 = await b.next('topic');
    assert.deepEqual([e1.topic, e1.data], ['scores.game1', { home: 2, away: 1 }]);
    const e2 = await b.next('topic');
    assert.deepEqual([e2.topic, e2.data], ['scores.game2', 'kick-off']);
    a.close();
    b.close();
  });

  it('tells the client its token expired and closes with 4401', async () => {
    const t = await login(s.url);
    const ws = await JsonClient.open(jsonUrl(s, t));
    clock.advance(601_000);
    await s.server.ctx.auth.sweep();
    const e = await ws.next('error');
    assert.deepEqual(e.data, { code: 'token_expired', message: 'token expired' });
    await ws.closed;
    assert.equal(ws.closeCode, 4401);
  });
});

describe('JSON WebSocket: acknowledgement window', () => {
  it('holds messages beyond maxUnackedPerSubscription until acks, then sends them in order', async () => {
    const s = await startServer({ maxUnackedPerSubscription: 2 });
    const admin = await login(s.url);
    const ws = await JsonClient.open(jsonUrl(s, admin));
    await ws.sync();
    for (let i = 1; i <= 5; i++) await send(s, admin, { content: 'n' + i, receiver: ['admin'], title: 't' + i, type: 0 });
    const first = [(await ws.next('message')).data as MessageData, (await ws.next('message')).data as MessageData];
    await ws.sync();
    assert.equal(ws.events.filter((e) => e.event === 'message').length, 0, 'the window is full');
    for (const m of first) ws.send({ action: 'ack', id: m.id });
    const next = [(await ws.next('message')).data as MessageData, (await ws.next('message')).data as MessageData];
    for (const m of next) ws.send({ action: 'ack', id: m.id });
    const last = (await ws.next('message')).data as MessageData;
    assert.deepEqual([...first, ...next, last].map((m) => m.content), ['n1', 'n2', 'n3', 'n4', 'n5']);
    ws.close();
    await s.stop();
  });

  it('flags a message sent before and never acknowledged with "redelivered":true', async () => {
    const s = await startServer({});
    const admin = await login(s.url);
    const first = await JsonClient.open(jsonUrl(s, admin));
    await first.sync();
    // A mailbox message the store does not keep (pushed by a back end): parked when its session goes without acknowledging.
    const pushed = await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/user/admin/queue/messages', body: { id: 'p1', content: 'hi' } } });
    assert.equal(pushed.status, 200, JSON.stringify(pushed.body));
    const once = await first.next('message');
    assert.equal((once as { redelivered?: boolean }).redelivered, undefined, 'the first delivery is not flagged');
    first.close();
    await first.closed;
    const second = await JsonClient.open(jsonUrl(s, admin));
    const again = await second.next('message');
    assert.deepEqual(again.data, { id: 'p1', content: 'hi' });
    assert.equal((again as { redelivered?: boolean }).redelivered, true);
    second.close();
    await s.stop();
  });
});
