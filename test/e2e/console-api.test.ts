/**
 * The admin API behind the console, with real clients: the last-admin
 * guard, users found a page at a time, password reset and deletion,
 * revocation ending password sessions (stompjs over TCP, mqtt.js), app
 * secrets rotated and apps deleted, the audit log, this node's history,
 * the access rules in force, the favicon and device names.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { WebSocket } from 'ws';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { connectLegacyTcp, RawStomp, wsUrl } from '../helpers/stomp.js';
import { tcpUrl } from '../helpers/mqtt.js';
import { UNNAMED_DEVICE } from '../../src/transports/handshake.js';

interface AuditRow {
  at: string;
  actorName: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
  address: string;
  node: string;
}

describe('console admin API', () => {
  let s: TestServer;
  let admin: string;

  before(async () => {
    s = await startServer({ historySampleSeconds: 1 });
    admin = await login(s.url);
  });
  after(async () => {
    await s.stop();
  });

  const addUser = async (name: string, role = 'user'): Promise<string> => {
    const r = await api<{ id: string }>(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password', role } });
    assert.equal(r.status, 200, r.body.message);
    return r.body.data.id;
  };
  const users = async () => (await api<{ id: string; name: string; role: string; disabled: boolean }[]>(s.url, 'GET', '/api/users', { token: admin })).body.data;
  const audit = async (query = '') => (await api<{ records: AuditRow[]; total: number }>(s.url, 'GET', `/api/admin/audit?size=100${query}`, { token: admin })).body.data;

  it('refuses to disable, demote or delete the last active admin, in words, and allows it once there is another', async () => {
    const adminId = (await users()).find((u) => u.name === 'admin')!.id;
    for (const [method, path, body, verb] of [
      ['PATCH', `/api/users/${adminId}`, { disabled: true }, 'disabling'],
      ['PATCH', `/api/users/${adminId}`, { role: 'user' }, 'demoting'],
      ['DELETE', `/api/users/${adminId}`, undefined, 'deleting'],
    ] as const) {
      const r = await api(s.url, method, path, { token: admin, ...(body ? { body } : {}) });
      assert.equal(r.status, 409, `${method} ${JSON.stringify(body)}`);
      assert.equal(r.body.message, `"admin" is the last active admin: ${verb} it would leave nobody able to manage users; make another user admin first`);
    }
    const me = (await users()).find((u) => u.name === 'admin')!;
    assert.deepEqual([me.role, me.disabled], ['admin', false], 'nothing changed');
    // With a second admin, the first can be demoted; then the second is the last one.
    const second = await addUser('second-admin', 'admin');
    const secondToken = await login(s.url, 'second-admin', 'second-admin-password');
    assert.equal((await api(s.url, 'PATCH', `/api/users/${adminId}`, { token: secondToken, body: { role: 'service' } })).status, 200);
    const refused = await api(s.url, 'DELETE', `/api/users/${second}`, { token: secondToken });
    assert.equal(refused.status, 409);
    assert.match(refused.body.message, /"second-admin" is the last active admin: deleting it/);
    assert.equal((await api(s.url, 'PATCH', `/api/users/${adminId}`, { token: secondToken, body: { role: 'admin' } })).status, 200);
    admin = await login(s.url);
    // Now the second one may go.
    assert.equal((await api(s.url, 'DELETE', `/api/users/${second}`, { token: admin })).status, 200);
    assert.equal((await users()).some((u) => u.name === 'second-admin'), false);
    assert.equal((await api(s.url, 'GET', '/v1/me', { token: secondToken })).status, 401, 'a deleted user’s token is dead');
    assert.equal((await api(s.url, 'DELETE', `/api/users/${second}`, { token: admin })).status, 404);
  });

  it('finds users by part of their name a page at a time', async () => {
    for (const n of ['find-me-1', 'find-me-2', 'FIND-ME-3', 'other-1']) await addUser(n);
    const page = await api<{ records: { name: string }[]; total: number; pages: number }>(s.url, 'GET', '/api/users/search?q=find-me&size=2', { token: admin });
    assert.equal(page.status, 200, page.body.message);
    assert.deepEqual([page.body.data.total, page.body.data.pages, page.body.data.records.map((u) => u.name)], [3, 2, ['find-me-1', 'find-me-2']]);
    const second = await api<{ records: { name: string }[] }>(s.url, 'GET', '/api/users/search?q=find-me&size=2&page=2', { token: admin });
    assert.deepEqual(second.body.data.records.map((u) => u.name), ['FIND-ME-3']);
    const bad = await api(s.url, 'GET', '/api/users/search?size=1000', { token: admin });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /size must be <= 100/);
  });

  it("resets a password: the old one stops working and the user's password sessions end", async () => {
    const id = await addUser('forgetful');
    const stomp = await connectLegacyTcp(s.server.address('stomp').port, { login: 'forgetful', passcode: 'forgetful-password' });
    const r = await api(s.url, 'PATCH', `/api/users/${id}`, { token: admin, body: { password: 'brand-new-password' } });
    assert.equal(r.status, 200, r.body.message);
    await waitFor(() => stomp.errors.length > 0, 'the STOMP session to end');
    assert.equal((await api(s.url, 'POST', '/v1/login', { body: { username: 'forgetful', password: 'forgetful-password' } })).status, 401);
    assert.equal((await api(s.url, 'POST', '/v1/login', { body: { username: 'forgetful', password: 'brand-new-password' } })).status, 200);
  });

  it('ends STOMP-TCP (stompjs) and MQTT sessions that logged in with a password when the user’s tokens are revoked', async () => {
    const id = await addUser('leaky');
    await addUser('bystander');
    const port = s.server.address('stomp').port;
    const stomp = await connectLegacyTcp(port, { login: 'leaky', passcode: 'leaky-password' });
    const other = await connectLegacyTcp(port, { login: 'bystander', passcode: 'bystander-password' });
    const device = await mqtt.connectAsync(tcpUrl(s), { username: 'leaky', password: 'leaky-password', reconnectPeriod: 0, protocolVersion: 5 });
    const mqttGone = new Promise<number | undefined>((resolve) => device.on('disconnect', (p) => resolve(p.reasonCode)));
    const revoked = await api<{ revoked: number }>(s.url, 'POST', `/api/users/${id}/revoke-tokens`, { token: admin });
    assert.equal(revoked.status, 200, revoked.body.message);
    await waitFor(() => stomp.errors.length > 0, 'the STOMP ERROR');
    const error = stomp.errors[0]!;
    assert.equal(typeof error === 'string' ? error : error.headers['message'], 'an administrator revoked the logins of "leaky"; connect again with valid credentials');
    assert.ok((await mqttGone) !== undefined, 'MQTT 5 is told with a DISCONNECT');
    await waitFor(() => !stomp.client.connected, 'the STOMP connection to close');
    // Somebody else's session is untouched.
    assert.equal(other.errors.length, 0);
    assert.equal(other.client.connected, true);
    other.client.disconnect(() => undefined);
    await device.endAsync();
  });

  it("rotates an app's secret (the old one and its app tokens stop working) and deletes an app, ending its users' sessions", async () => {
    const created = await api<{ appId: string; appClientId: string; appClientSecret: string }>(s.url, 'POST', '/api/apps', { token: admin, body: { name: 'arcade' } });
    const app = created.body.data;
    const appToken = async (secret: string) => api<unknown>(s.url, 'POST', '/openapi/rm/app/token', { body: { appClientId: app.appClientId, appClientSecret: secret } });
    const before = (await appToken(app.appClientSecret)).body as unknown as { body: { access_token: string } };
    const userToken = async (token: string) =>
      api<unknown>(s.url, 'POST', '/openapi/rm/user/token', { headers: { authorization: `Bearer ${token}` }, body: { username: 'player', cid: `phone@${app.appId}` } });
    const minted = (await userToken(before.body.access_token)).body as unknown as { body: { access_token: string } };
    const rotated = await api<{ appClientSecret: string; appClientId: string }>(s.url, 'POST', `/api/apps/${app.appId}/rotate-secret`, { token: admin });
    assert.equal(rotated.status, 200, rotated.body.message);
    assert.equal(rotated.body.data.appClientId, app.appClientId, 'the client id stays');
    assert.notEqual(rotated.body.data.appClientSecret, app.appClientSecret);
    assert.equal((await appToken(app.appClientSecret)).status, 401, 'the old secret is refused');
    assert.equal((await userToken(before.body.access_token)).status, 401, 'an app token got with the old secret is dead');
    assert.equal((await appToken(rotated.body.data.appClientSecret)).status, 200);
    // The user token minted before still works, until the app is deleted.
    const player = await mqtt.connectAsync(tcpUrl(s), { clientId: `phone@${app.appId}`, username: 'player', password: minted.body.access_token, reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => player.on('close', () => resolve()));
    const deleted = await api<{ sessionsEnded: number }>(s.url, 'DELETE', `/api/apps/${app.appId}`, { token: admin });
    assert.equal(deleted.status, 200, deleted.body.message);
    assert.equal(deleted.body.data.sessionsEnded, 1);
    await closed;
    assert.equal((await appToken(rotated.body.data.appClientSecret)).status, 401);
    assert.equal((await api(s.url, 'DELETE', `/api/apps/${app.appId}`, { token: admin })).status, 404);
    assert.equal((await api(s.url, 'POST', '/api/apps/nope/rotate-secret', { token: admin })).status, 404);
    await player.endAsync(true);
  });

  it('writes admin actions to the audit log (who, what, when, from where), never a password, and shows it to admins only', async () => {
    const id = await addUser('audited');
    await api(s.url, 'PATCH', `/api/users/${id}`, { token: admin, body: { role: 'service', password: 'secret-new-password' } });
    await api(s.url, 'POST', '/api/message/sendMessage', { token: admin, body: { receiver: ['audited'], title: 'hello', content: 'x' } });
    const raw = await RawStomp.tcp(s.server.address('stomp').port);
    await raw.connect({ login: 'audited', passcode: 'secret-new-password' });
    const sessionId = (await s.server.ctx.presence.sessions()).find((x) => x.name === 'audited')!.sessionId;
    await api(s.url, 'POST', `/api/admin/sessions/${sessionId}/disconnect`, { token: admin });
    await api(s.url, 'DELETE', `/api/users/${id}`, { token: admin });
    const log = await audit();
    const mine = log.records.filter((r) => r.target.includes('"audited"') || r.action === 'message.send' || r.action === 'session.disconnect');
    assert.deepEqual(
      mine.slice(0, 5).map((r) => r.action),
      ['user.delete', 'session.disconnect', 'message.send', 'user.update', 'user.create'],
      'newest first',
    );
    for (const r of mine) {
      assert.equal(r.actorName, 'admin');
      assert.equal(r.address, '127.0.0.1');
      assert.equal(r.node, s.server.ctx.nodeId);
      assert.ok(Date.now() - Date.parse(r.at) < 60_000, 'when');
    }
    const update = mine.find((r) => r.action === 'user.update')!;
    assert.deepEqual(update.detail, { role: 'service', password: 'reset' });
    assert.doesNotMatch(JSON.stringify(log), /secret-new-password/);
    assert.match(mine.find((r) => r.action === 'session.disconnect')!.target, /^audited's stomp-tcp session /);
    // Filters: an area, an actor.
    const userOnly = await audit('&action=user');
    assert.ok(userOnly.records.length > 0 && userOnly.records.every((r) => r.action.startsWith('user.')));
    assert.equal((await audit('&actor=nobody')).total, 0);
    // Admins only, and bad filters in words.
    await addUser('auditor-svc', 'service');
    const svcToken = await login(s.url, 'auditor-svc', 'auditor-svc-password');
    const forbidden = await api(s.url, 'GET', '/api/admin/audit', { token: svcToken });
    assert.equal(forbidden.status, 403);
    assert.match(forbidden.body.message, /needs the admin role/);
    assert.equal((await api(s.url, 'GET', '/api/admin/audit?action=DROP%20TABLE', { token: admin })).status, 400);
  });

  it("keeps this node's history of the overview series, with labels and units, a range at a time", async () => {
    await waitFor(async () => ((await api<{ t: number[] }>(s.url, 'GET', '/api/admin/history?range=15m', { token: admin })).body.data.t.length >= 2), 'two samples');
    const h = await api<{ node: string; range: string; sampleSeconds: number; bucketSeconds: number; series: { key: string; label: string; unit: string }[]; t: number[]; values: Record<string, (number | null)[]> }>(
      s.url,
      'GET',
      '/api/admin/history?range=15m',
      { token: admin },
    );
    const d = h.body.data;
    // 15 min of 1 s samples is 900: buckets of 3 s keep it under 360 points.
    assert.deepEqual([d.node, d.range, d.sampleSeconds, d.bucketSeconds], [s.server.ctx.nodeId, '15m', 1, 3]);
    for (const key of ['conn.stomp-tcp', 'msg.in', 'msg.out', 'cut.slow', 'store.avg', 'loop.mean', 'mem.rss', 'mem.heap']) {
      const series = d.series.find((x) => x.key === key);
      assert.ok(series?.label && series.unit, `${key} has a label and a unit`);
      assert.equal(d.values[key]!.length, d.t.length);
    }
    assert.ok(d.values['mem.rss']!.every((v) => v !== null && v > 1));
    const since = d.t[d.t.length - 1]!;
    const tail = await api<{ t: number[] }>(s.url, 'GET', `/api/admin/history?range=15m&since=${since}`, { token: admin });
    assert.ok(tail.body.data.t.every((t) => t >= since) && tail.body.data.t[0] === since);
    const bad = await api(s.url, 'GET', '/api/admin/history?range=2d', { token: admin });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /range must be equal to one of the allowed values/);
  });

  it('shows the access rules in force, or says there is no aclFile', async () => {
    const none = await api<{ file: string | null; rules: unknown[]; summary: string }>(s.url, 'GET', '/api/admin/acl', { token: admin });
    assert.deepEqual([none.body.data.file, none.body.data.rules], [null, []]);
    assert.match(none.body.data.summary, /no aclFile is set/);
    const file = join(s.dataDir, 'acl.json');
    const rules = [
      { effect: 'allow', action: 'all', topic: 'rooms/{user}/#', who: 'user' },
      { effect: 'deny', action: 'publish', topic: '#', who: '*' },
    ];
    writeFileSync(file, JSON.stringify(rules));
    const other = await startServer({ aclFile: file });
    try {
      const r = await api<{ file: string; rules: unknown[]; summary: string }>(other.url, 'GET', '/api/admin/acl', { token: await login(other.url) });
      assert.deepEqual(r.body.data.rules, rules);
      assert.equal(r.body.data.file, file);
      assert.match(r.body.data.summary, /^2 rules from .*the first that matches decides/);
    } finally {
      await other.stop();
    }
  });

  it('serves /favicon.ico, and names a WebSocket client that sends no User-Agent', async () => {
    const icon = await fetch(`${s.url}/favicon.ico`);
    assert.equal(icon.status, 200);
    assert.equal(icon.headers.get('content-type'), 'image/x-icon');
    assert.deepEqual([...new Uint8Array(await icon.arrayBuffer()).slice(0, 4)], [0, 0, 1, 0], 'an ICO file');
    const named = new WebSocket(wsUrl(s.url, `/stomp?__token=${admin}&device=kiosk-7`), ['v12.stomp']);
    const bare = new WebSocket(wsUrl(s.url, `/stomp?__token=${admin}`), ['v12.stomp']);
    await Promise.all([named, bare].map((ws) => new Promise((r) => ws.once('open', r))));
    for (const ws of [named, bare]) ws.send('CONNECT\naccept-version:1.2\nhost:x\n\n\0');
    await waitFor(async () => (await s.server.ctx.presence.sessions()).filter((x) => x.protocol === 'stomp-ws').length === 2, 'both sessions');
    const devices = (await s.server.ctx.presence.sessions()).filter((x) => x.protocol === 'stomp-ws').map((x) => x.device).sort();
    assert.deepEqual(devices, ['kiosk-7', UNNAMED_DEVICE]);
    named.close();
    bare.close();
  });
});

/** Polls `check` every 50 ms until it holds; fails after 10 s naming what it waited for. */
async function waitFor(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`waited 10 s for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}


