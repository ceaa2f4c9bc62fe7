/**
 * The STOMP client profiles of docs/clients.md, written afresh with the same library calls:
 * stompjs 2.3.3 (media-service notifications) and @stomp/stompjs 7 (customer-service chat).
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { WebSocket } from 'ws';
import { Client, type IMessage, type IFrame } from '@stomp/stompjs';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { connectLegacy, wsUrl, type LegacyFrame } from '../helpers/stomp.js';

Object.assign(globalThis, { WebSocket });

/** Resolves with the HTTP status and envelope of a refused WebSocket handshake. */
function refusedHandshake(url: string): Promise<{ status: number; body: { code: number; message: string } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['v11.stomp']);
    ws.on('open', () => reject(new Error('handshake was accepted')));
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code: number; message: string } }));
    });
    ws.on('error', () => undefined);
  });
}

function nextMessage<T>(subscribe: (cb: (m: T) => void) => void): Promise<T> {
  return new Promise((resolve) => subscribe(resolve));
}

async function createUser(s: TestServer, admin: string, name: string, role = 'user'): Promise<string> {
  const r = await api(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role } });
  assert.equal(r.status, 200, r.body.message);
  return login(s.url, name, name + '-password');
}

describe('media-service notifications: /v1/ws with stompjs 2.3 and the /test debug destination', () => {
  let s: TestServer;
  let token: string;
  before(async () => {
    s = await startServer();
    token = await login(s.url);
  });
  after(() => s.stop());

  it('echoes WsTestReq.msg verbatim to /user/{token}/queue/{queue}', async () => {
    const { client } = await connectLegacy(wsUrl(s.url, '/v1/ws?__token=' + token));
    const payload = { reqId: crypto.randomUUID(), note: 'héllo 世界' };
    const got = nextMessage<LegacyFrame>((cb) => client.subscribe('/user/' + token + '/queue/mytest', cb));
    // WsTestReq as the client builds it: msg is the JSON text of the payload.
    client.send('/test', null, JSON.stringify({ queue: 'mytest', msg: JSON.stringify(payload) }));
    const frame = await got;
    assert.deepEqual(JSON.parse(frame.body), payload);
    assert.equal(frame.headers['destination'], '/user/' + token + '/queue/mytest');
    client.disconnect(() => undefined);
  });

  it('answers a malformed /test request on /user/queue/errors and keeps the connection', async () => {
    const { client, errors } = await connectLegacy(wsUrl(s.url, '/v1/ws?__token=' + token));
    const queueErrors: LegacyFrame[] = [];
    const echo = nextMessage<LegacyFrame>((cb) => client.subscribe('/user/queue/mytest2', cb));
    client.subscribe('/user/queue/errors', (f) => queueErrors.push(f));
    client.send('/test', null, 'not json');
    client.send('/test', null, JSON.stringify({ queue: 'mytest2' }));
    client.send('/test', null, JSON.stringify({ queue: 'mytest2', msg: 'still here' }));
    assert.equal((await echo).body, 'still here');
    assert.equal(queueErrors.length, 2);
    assert.match(JSON.parse(queueErrors[0]!.body).error, /must be JSON/);
    assert.match(JSON.parse(queueErrors[1]!.body).error, /WsTestReq.msg is missing/);
    assert.equal(errors.length, 0);
    assert.equal(client.connected, true);
    client.disconnect(() => undefined);
  });

  it('refuses the handshake with 401 and words when the token is missing or unknown', async () => {
    const none = await refusedHandshake(wsUrl(s.url, '/v1/ws'));
    assert.equal(none.status, 401);
    assert.match(none.body.message, /token is missing/);
    const bad = await refusedHandshake(wsUrl(s.url, '/v1/ws?__token=AAAAAAAAAAAAAAAAAAAAAA'));
    assert.equal(bad.status, 401);
    assert.match(bad.body.message, /invalid or expired/);
    const nowhere = await refusedHandshake(wsUrl(s.url, '/v2/ws'));
    assert.equal(nowhere.status, 404);
  });

  it('negotiates STOMP 1.1 with stompjs 2.3 and sends every frame as one text message', async () => {
    const { client } = await connectLegacy(wsUrl(s.url, '/v1/ws?__token=' + token));
    assert.equal(client.ws.protocol, 'v11.stomp');
    const raw: { data: unknown; isBinary: boolean }[] = [];
    client.ws.on('message', (data: unknown, isBinary: boolean) => raw.push({ data, isBinary }));
    const big = 'x'.repeat(40_000); // stompjs splits frames over 16 KiB into several WebSocket messages
    const got = nextMessage<LegacyFrame>((cb) => client.subscribe('/user/queue/big', cb));
    client.send('/test', null, JSON.stringify({ queue: 'big', msg: big }));
    assert.equal((await got).body, big);
    const msg = raw.find((m) => String(m.data).startsWith('MESSAGE'));
    assert.ok(msg, 'MESSAGE arrived as its own WebSocket message');
    assert.equal(msg.isBinary, false);
    assert.ok(String(msg.data).endsWith('\0'));
    client.disconnect(() => undefined);
  });
});

describe('media-service notifications: reconnecting only while the token lives', () => {
  const clock = new ManualClock(Date.now());
  let s: TestServer;
  let service: string;
  before(async () => {
    s = await startServer({ tokenIdleSeconds: 600, tokenSweepMs: 60_000 }, clock);
    const admin = await login(s.url);
    service = await createUser(s, admin, 'media', 'service');
    await createUser(s, admin, 'viewer');
  });
  after(() => s.stop());

  it('delivers a StrmNotif pushed by a back end, then tells the client its token expired', async () => {
    const r = await api<{ authToken: string }[]>(s.url, 'POST', '/v1/login', { body: { username: 'viewer', password: 'viewer-password' } });
    const token = r.body.data[0]!.authToken;
    let lastApiTime = clock.now();
    const url = wsUrl(s.url, '/v1/ws?__token=' + token);
    const { client, errors } = await connectLegacy(url);
    const notif = nextMessage<LegacyFrame>((cb) => client.subscribe('/user/' + token + '/queue/strm', cb));
    const pushed = await api(s.url, 'POST', '/api/publish', {
      token: service,
      body: { destination: '/user/viewer/queue/strm', body: { act: 'strmReady', simNo: '013800000000', channel: 1 } },
    });
    assert.equal(pushed.status, 200, pushed.body.message);
    const frame = await notif;
    assert.equal(JSON.parse(frame.body).act, 'strmReady');
    assert.equal(frame.headers['content-type'], 'application/json');

    // Ten quiet minutes later the token is dead; the socket session dies with it.
    clock.advance(600_000);
    await s.server.ctx.auth.sweep();
    await waitFor(() => errors.length > 0);
    const first = errors[0] as LegacyFrame;
    assert.equal(first.command, 'ERROR');
    assert.equal(first.headers['message'], 'token expired');

    // The client's error handler reconnects only if the last API call is recent: it is not.
    const sinceLastApiCall = clock.now() - lastApiTime;
    assert.ok(!(sinceLastApiCall < 10 * 60 * 1000), 'the notifications client would not reconnect');
    // And a reconnect with the dead token would be refused anyway.
    const refused = await refusedHandshake(url);
    assert.equal(refused.status, 401);
    assert.match(refused.body.message, /expired|invalid/);

    // After POST /login succeeds again, the client connects again.
    const again = await login(s.url, 'viewer', 'viewer-password');
    lastApiTime = clock.now();
    const { client: c2 } = await connectLegacy(wsUrl(s.url, '/v1/ws?__token=' + again));
    assert.equal(c2.connected, true);
    assert.ok(lastApiTime > 0);
    c2.disconnect(() => undefined);
  });

  it('ends sockets at logout with "token revoked"', async () => {
    const token = await login(s.url, 'viewer', 'viewer-password');
    const { errors } = await connectLegacy(wsUrl(s.url, '/v1/ws?__token=' + token));
    await api(s.url, 'POST', '/v1/logout', { token });
    await waitFor(() => errors.length > 0);
    assert.equal((errors[0] as LegacyFrame).headers['message'], 'token revoked');
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves once every frame the client sent so far was handled (a RECEIPT round trip). */
function subscribed(c: Client): Promise<void> {
  const id = 'sync-' + Math.random().toString(36).slice(2);
  return new Promise((resolve) => {
    c.watchForReceipt(id, () => resolve());
    c.publish({ destination: '/topic/sync', headers: { receipt: id } });
  });
}

/** A customer-service chat client: `login` connect header, 10 s heart-beats, ack:client subscriptions. */
function stompClient(url: string, connectHeaders: Record<string, string>): Promise<Client & { stompErrors: IFrame[] }> {
  const client = new Client({
    brokerURL: url,
    connectHeaders,
    heartbeatIncoming: 10_000,
    heartbeatOutgoing: 10_000,
    reconnectDelay: 0,
  }) as Client & { stompErrors: IFrame[] };
  client.stompErrors = [];
  client.onStompError = (f) => client.stompErrors.push(f);
  return new Promise((resolve, reject) => {
    client.onConnect = () => resolve(client);
    client.onWebSocketClose = () => reject(new Error('closed before CONNECTED: ' + client.stompErrors.map((f) => f.headers['message']).join()));
    client.activate();
  });
}

describe('customer-service chat: @stomp/stompjs on /stomp', () => {
  let s: TestServer;
  let admin: string;
  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    await createUser(s, admin, 'visitor');
  });
  after(() => s.stop());

  it('connects with the token in the login header, negotiates 1.2, acks with message.ack()', async () => {
    const token = await login(s.url, 'visitor', 'visitor-password');
    const a = await stompClient(wsUrl(s.url, '/stomp'), { login: token });
    const b = await stompClient(wsUrl(s.url, '/stomp'), { login: 'admin', passcode: 'admin-secret-pw' });
    assert.equal(a.connectedVersion, '1.2');
    const thread = 'org/1/thread/42'.replace(/\//g, '.');
    const seen: IMessage[] = [];
    const both = new Promise<void>((resolve) => {
      const onMsg = (m: IMessage) => {
        seen.push(m);
        m.ack();
        if (seen.length === 2) resolve();
      };
      a.subscribe('/topic/' + thread, onMsg, { ack: 'client' });
      b.subscribe('/topic/' + thread, onMsg, { ack: 'client' });
    });
    await subscribed(b);
    a.publish({ destination: '/topic/' + thread, body: JSON.stringify({ uid: 'u1', type: 'TEXT', content: 'hi' }) });
    await both;
    assert.equal(seen[0]!.headers['destination'], '/topic/org.1.thread.42');
    assert.ok(seen[0]!.headers['ack'], 'STOMP 1.2 MESSAGE carries an ack header');
    assert.equal(JSON.parse(seen[1]!.body).content, 'hi');
    assert.deepEqual(a.stompErrors, []);
    await a.deactivate();
    await b.deactivate();
  });

  it('refuses a wrong login with an ERROR that says so', async () => {
    await assert.rejects(stompClient(wsUrl(s.url, '/stomp'), { login: 'visitor', passcode: 'wrong' }), /authentication failed/);
    await assert.rejects(stompClient(wsUrl(s.url, '/stomp'), {}), /authentication failed/);
  });

  it('lets a service push to every session of a user, and keeps mailboxes private', async () => {
    const sender = await stompClient(wsUrl(s.url, '/stomp'), { login: await createUser(s, admin, 'pusher', 'service') });
    const v1 = await stompClient(wsUrl(s.url, '/stomp'), { login: await login(s.url, 'visitor', 'visitor-password') });
    const v2 = await stompClient(wsUrl(s.url, '/stomp?__token=' + (await login(s.url, 'visitor', 'visitor-password'))), {});
    const inboxes = [v1, v2].map((c) => new Promise<IMessage>((resolve) => c.subscribe('/user/queue/messages', resolve)));
    await Promise.all([v1, v2].map((c) => subscribed(c)));
    sender.publish({ destination: '/user/visitor/queue/messages', body: 'for every session' });
    assert.deepEqual((await Promise.all(inboxes)).map((m) => m.body), ['for every session', 'for every session']);

    // A plain user may neither write to another user's mailbox nor read it.
    const intruder = await stompClient(wsUrl(s.url, '/stomp'), { login: await createUser(s, admin, 'intruder') });
    intruder.publish({ destination: '/user/visitor/queue/messages', body: 'spam' });
    await waitFor(() => intruder.stompErrors.length > 0);
    assert.match(intruder.stompErrors[0]!.body, /needs the service or admin role/);
    const snoop = await stompClient(wsUrl(s.url, '/stomp'), { login: await login(s.url, 'intruder', 'intruder-password') });
    snoop.subscribe('/user/visitor/queue/messages', () => undefined);
    await waitFor(() => snoop.stompErrors.length > 0);
    assert.match(snoop.stompErrors[0]!.body, /another user's queue/);
    for (const c of [v1, v2, sender]) await c.deactivate();
  });
});
