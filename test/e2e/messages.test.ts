/**
 * The message service (the "message service" client profile of
 * docs/clients.md): HTTP API, delivery status, re-send on connect across the
 * JSON WebSocket and STOMP, and the management API. The JSON WebSocket
 * protocol itself is tested in json-ws.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { JsonClient, jsonUrl, type MessageData } from '../helpers/json-ws.js';
import { sendMessage as send } from '../helpers/messages.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';

interface PageData {
  records: (MessageData & { receivers: { receiver: string; receiverName: string; status: string }[] })[];
  total: number;
  current: number;
  size: number;
  pages: number;
}

async function addUser(s: TestServer, admin: string, name: string, role = 'user'): Promise<{ id: string; token: string }> {
  const r = await api<{ id: string }>(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role } });
  assert.equal(r.status, 200, r.body.message);
  return { id: r.body.data.id, token: await login(s.url, name, name + '-password') };
}

async function statusOf(s: TestServer, admin: string, id: string, receiver: string): Promise<string | undefined> {
  const page = await api<PageData>(s.url, 'GET', `/api/message/getMessagePage?size=100`, { token: admin });
  return page.body.data.records.find((m) => m.id === id)?.receivers.find((r) => r.receiver === receiver)?.status;
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('message service: sending and delivery status', () => {
  let s: TestServer;
  let admin: string;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };
  before(async () => {
    s = await startServer({ messageMaxContentBytes: 1000 });
    admin = await login(s.url);
    alice = await addUser(s, admin, 'alice');
    bob = await addUser(s, admin, 'bob');
  });
  after(() => s.stop());

  it('stores one record with a row per receiver, reports unknown receivers, delivers to the others', async () => {
    const ws = await JsonClient.open(jsonUrl(s, alice.token));
    const r = await send(s, admin, { content: '{"report":7}', receiver: [alice.id, 'bob', 'nobody', 424242], title: 'Report ready', type: 0 });
    assert.deepEqual(r.receivers.sort(), [alice.id, bob.id].sort());
    assert.deepEqual(r.unknownReceivers, ['nobody', '424242']);
    const ev = await ws.next('message');
    const data = ev.data as MessageData;
    assert.deepEqual([data.id, data.title, data.content, data.type, data.sender], [r.id, 'Report ready', '{"report":7}', 0, 'admin']);
    assert.ok(!Number.isNaN(Date.parse(data.createdAt)));
    assert.equal(await statusOf(s, admin, r.id, alice.id), 'PENDING', 'not acknowledged yet');
    ws.send({ action: 'ack', id: data.id });
    await ws.sync();
    assert.equal(await statusOf(s, admin, r.id, alice.id), 'DELIVERED');
    ws.send({ action: 'read', id: data.id });
    await ws.sync();
    assert.equal(await statusOf(s, admin, r.id, alice.id), 'READ');
    assert.equal(await statusOf(s, admin, r.id, bob.id), 'PENDING', 'bob is offline');
    ws.close();
  });

  it('refuses bad sends with the envelope and stores nothing', async () => {
    const before = (await api<PageData>(s.url, 'GET', '/api/message/getMessagePage', { token: admin })).body.data.total;
    const bad = async (body: unknown, status: number, re: RegExp, token = admin) => {
      const r = await api(s.url, 'POST', '/api/message/sendMessage', { token, body });
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.match(r.body.message, re);
      return r;
    };
    const allUnknown = await bad({ content: 'x', receiver: ['ghost'] }, 400, /none of the receivers exist: ghost/);
    assert.deepEqual(allUnknown.body.data, { unknownReceivers: ['ghost'] });
    await bad({ content: '', receiver: ['bob'] }, 400, /content is empty/);
    await bad({ content: 'x'.repeat(1001), receiver: ['bob'] }, 413, /limit is 1000/);
    await bad({ content: 5, receiver: ['bob'] }, 400, /body\/content must be string/);
    await bad({ content: 'x', receiver: 'bob' }, 400, /body\/receiver must be array/);
    await bad({ content: 'x', receiver: [] }, 400, /empty list/);
    await bad({ content: 'x', receiver: ['bob'], colour: 'red' }, 400, /unknown field "colour"/);
    await bad({ content: 'x', receiver: ['bob'] }, 403, /admin or service role/, alice.token);
    await bad({ content: 'x' }, 403, /everyone online needs the admin or service role/, alice.token);
    const after = (await api<PageData>(s.url, 'GET', '/api/message/getMessagePage', { token: admin })).body.data.total;
    assert.equal(after, before);
  });

  it('broadcasts to everyone online on every protocol, and records those receivers', async () => {
    const carol = await addUser(s, admin, 'carol');
    const ws = await JsonClient.open(jsonUrl(s, alice.token));
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: carol.token });
    stomp.send('SUBSCRIBE\nid:m\ndestination:/user/queue/messages\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    await ws.sync();
    const r = await send(s, admin, { content: 'maintenance at 22:00', title: 'Notice', type: 1 });
    assert.deepEqual(r.receivers.sort(), [alice.id, carol.id].sort());
    assert.equal((await ws.next('message')).data && true, true);
    const m = await stomp.next('MESSAGE');
    assert.equal(JSON.parse(m.body.toString()).content, 'maintenance at 22:00');
    assert.equal(frameHeader(m, 'content-type'), 'application/json');
    // STOMP auto-ack: delivered once written
    await eventually(async () => (await statusOf(s, admin, r.id, carol.id)) === 'DELIVERED');
    ws.close();
    stomp.close();
  });

  it('keeps a STOMP client-ack delivery PENDING until the ACK', async () => {
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: bob.token });
    stomp.send('SUBSCRIBE\nid:m\ndestination:/user/queue/messages\nack:client-individual\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    // bob first gets what is still pending for him (from the first test)
    const backlog = await stomp.next('MESSAGE');
    assert.equal(JSON.parse(backlog.body.toString()).title, 'Report ready');
    const r = await send(s, admin, { content: 'ack me', receiver: [bob.id], title: 't', type: 0 });
    const m = await stomp.next('MESSAGE');
    assert.equal(JSON.parse(m.body.toString()).id, r.id);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(await statusOf(s, admin, r.id, bob.id), 'PENDING');
    stomp.send(`ACK\nid:${frameHeader(m, 'ack')}\nreceipt:a\n\n\0`);
    await stomp.next('RECEIPT');
    await eventually(async () => (await statusOf(s, admin, r.id, bob.id)) === 'DELIVERED');
    stomp.close();
  });
});

describe('message service: re-send on connect', () => {
  let s: TestServer;
  let admin: string;
  let dave: { id: string; token: string };
  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    dave = await addUser(s, admin, 'dave');
  });
  after(() => s.stop());

  it('re-sends PENDING messages oldest first, before live ones, without duplicates (JSON WebSocket)', async () => {
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) ids.push((await send(s, admin, { content: 'offline ' + i, receiver: ['dave'], title: 'm' + i, type: 0 })).id);
    const ws = await JsonClient.open(jsonUrl(s, dave.token));
    // A live message right as the client connects: it must come after the backlog, once.
    ids.push((await send(s, admin, { content: 'live', receiver: ['dave'], title: 'm6', type: 0 })).id);
    const got: string[] = [];
    for (let i = 0; i < 6; i++) got.push((((await ws.next('message')).data) as MessageData).id);
    assert.deepEqual(got, ids);
    await ws.sync();
    assert.equal(ws.events.filter((e) => e.event === 'message').length, 0, 'no duplicates');
    // Nothing acknowledged: a second connection gets all six again.
    ws.close();
    await ws.closed;
    const again = await JsonClient.open(jsonUrl(s, dave.token));
    const second: string[] = [];
    for (let i = 0; i < 6; i++) {
      const d = (await again.next('message')).data as MessageData;
      second.push(d.id);
      again.send({ action: 'ack', id: d.id });
    }
    assert.deepEqual(second, ids);
    await again.sync();
    again.close();
    await again.closed;
    // All acknowledged: a third connection gets nothing.
    const third = await JsonClient.open(jsonUrl(s, dave.token));
    await third.sync();
    assert.equal(third.events.filter((e) => e.event === 'message').length, 0);
    third.close();
  });

  it('re-sends over STOMP /user/queue/messages too, and collectMessage empties the rest', async () => {
    const a = await send(s, admin, { content: 'one', receiver: ['dave'], title: 'x', type: 0 });
    const b = await send(s, admin, { content: 'two', receiver: ['dave'], title: 'y', type: 0 });
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: dave.token });
    stomp.send('SUBSCRIBE\nid:m\ndestination:/user/dave/queue/messages\nack:client\n\n\0');
    const m1 = await stomp.next('MESSAGE');
    const m2 = await stomp.next('MESSAGE');
    assert.deepEqual([JSON.parse(m1.body.toString()).id, JSON.parse(m2.body.toString()).id], [a.id, b.id]);
    stomp.close();
    await stomp.closedPromise;
    const c = await api<MessageData[]>(s.url, 'POST', '/api/message/collectMessage', { token: dave.token, body: {} });
    assert.deepEqual(c.body.data.map((m) => m.id), [a.id, b.id]);
    const d = await api<MessageData[]>(s.url, 'POST', '/api/message/collectMessage', { token: dave.token });
    assert.deepEqual(d.body.data, [], 'collected messages are DELIVERED now (and no body is fine)');
    const bad = await api(s.url, 'POST', '/api/message/collectMessage', { token: dave.token, body: { limit: 0 } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /limit must be an integer from 1 to 1000/);
  });
});

describe('message service: management API', () => {
  let s: TestServer;
  let admin: string;
  let erin: { id: string; token: string };
  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    erin = await addUser(s, admin, 'erin');
    for (let i = 1; i <= 12; i++) await send(s, admin, { content: 'c' + i, receiver: ['erin'], title: 't' + i, type: i % 2 });
  });
  after(() => s.stop());

  it('pages newest first with a total and filters', async () => {
    const p1 = await api<PageData>(s.url, 'GET', '/api/message/getMessagePage?page=1&size=5', { token: admin });
    assert.deepEqual(p1.body.data.records.map((m) => m.title), ['t12', 't11', 't10', 't9', 't8']);
    assert.deepEqual([p1.body.data.total, p1.body.data.pages, p1.body.data.current], [12, 3, 1]);
    const p3 = await api<PageData>(s.url, 'GET', '/api/message/getMessagePage?page=3&size=5', { token: admin });
    assert.deepEqual(p3.body.data.records.map((m) => m.title), ['t2', 't1']);
    const beyond = await api<PageData>(s.url, 'GET', '/api/message/getMessagePage?page=9&size=5', { token: admin });
    assert.deepEqual(beyond.body.data.records, []);
    const odd = await api<PageData>(s.url, 'GET', '/api/message/getMessagePage?type=1&size=100', { token: admin });
    assert.equal(odd.body.data.total, 6);
    const byReceiver = await api<PageData>(s.url, 'GET', '/api/message/getMessagePage?receiver=erin&status=PENDING', { token: admin });
    assert.equal(byReceiver.body.data.total, 12);
    assert.equal(byReceiver.body.data.records[0]!.receivers[0]!.receiverName, 'erin');
    const bySender = await api<PageData>(s.url, 'GET', '/api/message/getMessagePage?sender=nobody', { token: admin });
    assert.equal(bySender.body.data.total, 0);
    const window = await api<PageData>(s.url, 'GET', `/api/message/getMessagePage?from=2000-01-01T00:00:00Z&to=${Date.now() + 60_000}`, { token: admin });
    assert.equal(window.body.data.total, 12);
  });

  it('refuses out-of-range paging, bad filters and non-managers', async () => {
    const bad = async (q: string, status: number, re: RegExp, token = admin) => {
      const r = await api(s.url, 'GET', '/api/message/getMessagePage' + q, { token });
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.match(r.body.message, re);
    };
    await bad('?size=101', 400, /querystring\/size must be <= 100/);
    await bad('?page=0', 400, /querystring\/page must be >= 1/);
    await bad('?page=abc', 400, /page must be integer/);
    await bad('?status=LOST', 400, /status must be equal to one of the allowed values/);
    await bad('?from=yesterday', 400, /from must be epoch milliseconds or an ISO 8601 date/);
    await bad('?colour=red', 400, /unknown field "colour"/);
    await bad('', 403, /admin or service role/, erin.token);
  });

  it('deletes by id (DELETE and POST), 404 for unknown ids, and a deleted message is not re-sent', async () => {
    const victim = await send(s, admin, { content: 'delete me', receiver: ['erin'], title: 'gone', type: 0 });
    const other = await send(s, admin, { content: 'keep me', receiver: ['erin'], title: 'kept', type: 0 });
    assert.equal((await api(s.url, 'DELETE', `/api/message/deleteMessageById?id=${victim.id}`, { token: admin })).status, 200);
    const again = await api(s.url, 'DELETE', `/api/message/deleteMessageById?id=${victim.id}`, { token: admin });
    assert.equal(again.status, 404);
    assert.match(again.body.message, new RegExp(`no message with id ${victim.id}`));
    assert.equal((await api(s.url, 'POST', '/api/message/deleteMessageById', { token: admin, body: { id: Number(other.id) } })).status, 200);
    assert.equal((await api(s.url, 'POST', '/api/message/deleteMessageById', { token: admin, body: { id: 'x9' } })).status, 404);
    assert.equal((await api(s.url, 'DELETE', '/api/message/deleteMessageById', { token: admin })).status, 400);
    assert.equal((await api(s.url, 'DELETE', `/api/message/deleteMessageById?id=1`, { token: erin.token })).status, 403);
    const ws = await JsonClient.open(jsonUrl(s, erin.token));
    await ws.sync();
    const titles = ws.events.filter((e) => e.event === 'message').map((e) => (e.data as MessageData).title);
    assert.ok(!titles.includes('gone') && !titles.includes('kept'));
    assert.equal(titles.length, 12, 'the twelve from before, still pending');
    ws.close();
    await ws.closed;
  });

  it('lists online clients across protocols with user, device, protocol, address and login time', async () => {
    const ws = await JsonClient.open(jsonUrl(s, erin.token) + '?device=pixel-9');
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: erin.token });
    const r = await api<{ userId: string; loginName: string; device: string; protocol: string; remoteAddress: string; loginTime: string; status: string }[]>(
      s.url,
      'GET',
      '/api/message/getWebSocketClients',
      { token: admin },
    );
    const mine = r.body.data.filter((c) => c.loginName === 'erin');
    assert.deepEqual(mine.map((c) => c.protocol).sort(), ['json-ws', 'stomp-tcp']);
    const json = mine.find((c) => c.protocol === 'json-ws')!;
    assert.equal(json.device, 'pixel-9');
    assert.equal(json.userId, erin.id);
    assert.equal(json.status, 'ONLINE');
    assert.match(json.remoteAddress, /127\.0\.0\.1/);
    assert.ok(Date.parse(json.loginTime) > 0);
    ws.close();
    stomp.close();
  });

  it('marks a message read over HTTP, only for its receivers', async () => {
    const m = await send(s, admin, { content: 'read me', receiver: ['erin'], title: 'r', type: 0 });
    assert.equal((await api(s.url, 'POST', '/api/message/markRead', { token: erin.token, body: { id: m.id } })).status, 200);
    assert.equal(await statusOf(s, admin, m.id, erin.id), 'READ');
    assert.equal((await api(s.url, 'POST', '/api/message/markRead', { token: admin, body: { id: m.id } })).status, 404);
  });

  it('prunes by the per-user count in the retention sweep', async () => {
    const t = await startServer({ messageMaxPerUser: 3 });
    const a = await login(t.url);
    for (let i = 1; i <= 6; i++) await send(t, a, { content: 'c', receiver: ['admin'], title: 'k' + i, type: 0 });
    assert.ok((await t.server.ctx.messages.sweep()) > 0);
    const page = await api<PageData>(t.url, 'GET', '/api/message/getMessagePage?size=100', { token: a });
    assert.deepEqual(page.body.data.records.map((m) => m.title), ['k6', 'k5', 'k4']);
    await t.stop();
  });
});
