import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';

/** Every error answer must be the envelope with the HTTP status as code and words in message. */
function assertEnvelope(r: { status: number; body: { code: number; message: string } }, status: number, words: RegExp): void {
  assert.equal(r.status, status, `status: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.code, status);
  assert.match(r.body.message, words);
}

describe('HTTP API: login, tokens and the envelope', () => {
  const clock = new ManualClock(Date.now());
  let s: TestServer;
  before(async () => {
    s = await startServer({ loginMaxAttempts: 5, httpBodyLimit: 2048 }, clock);
  });
  after(() => s.stop());

  it('logs in as the media-service notifications client expects: data[0].authToken', async () => {
    const r = await api<{ authToken: string; userId: string; expiresIn: number }[]>(s.url, 'POST', '/v1/login', {
      body: { username: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.code, 200);
    assert.equal(r.body.message, 'OK');
    assert.match(r.body.data[0]!.authToken, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(r.body.data[0]!.expiresIn, 600);
  });

  it('accepts the token as X-Auth-Token, Bearer and __token', async () => {
    const token = await login(s.url);
    assert.equal((await api(s.url, 'GET', '/v1/me', { token })).status, 200);
    assert.equal((await api(s.url, 'GET', '/v1/me', { headers: { authorization: `Bearer ${token}` } })).status, 200);
    const q = await api<{ name: string }>(s.url, 'GET', `/v1/me?__token=${token}`);
    assert.equal(q.status, 200);
    assert.equal(q.body.data.name, 'admin');
    // Also on routes whose query schema refuses unknown parameters (Fastify checks the query before the token is read).
    assert.equal((await api(s.url, 'GET', `/api/message/getMessagePage?__token=${token}&size=5`)).status, 200);
    assert.equal((await api(s.url, 'GET', `/api/v1/threads?__token=${token}&limit=5`)).status, 200);
    assertEnvelope(await api(s.url, 'GET', `/api/v1/threads?__token=${token}&nope=1`), 400, /unknown field "nope"/);
  });

  it('answers 401 with words for a missing, unknown or expired token', async () => {
    assertEnvelope(await api(s.url, 'GET', '/v1/me'), 401, /authentication required/);
    assertEnvelope(await api(s.url, 'GET', '/v1/me', { token: 'AAAAAAAAAAAAAAAAAAAAAA' }), 401, /invalid or expired/);
    const token = await login(s.url);
    clock.advance(599_000);
    assert.equal((await api(s.url, 'GET', '/v1/me', { token })).status, 200, 'renews');
    clock.advance(599_000);
    assert.equal((await api(s.url, 'GET', '/v1/me', { token })).status, 200, 'still alive after renewal');
    clock.advance(600_000);
    assertEnvelope(await api(s.url, 'GET', '/v1/me', { token }), 401, /token expired/);
  });

  it('kills a token at logout', async () => {
    const token = await login(s.url);
    assert.equal((await api(s.url, 'POST', '/v1/logout', { token })).status, 200);
    assertEnvelope(await api(s.url, 'GET', '/v1/me', { token }), 401, /invalid or expired/);
  });

  it('refuses bad login bodies with 400 and the field named', async () => {
    assertEnvelope(await api(s.url, 'POST', '/v1/login', { body: '{"username": "admin", ' }), 400, /not valid JSON/);
    assertEnvelope(await api(s.url, 'POST', '/v1/login', { body: { username: 5, password: 'x' } }), 400, /body\/username must be string/);
    assertEnvelope(await api(s.url, 'POST', '/v1/login', { body: { username: 'admin' } }), 400, /missing required field "password"/);
    assertEnvelope(
      await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: 'x', remember: true } }),
      400,
      /unknown field "remember"/,
    );
    assertEnvelope(await api(s.url, 'POST', '/v1/login', { body: '', headers: { 'content-type': 'application/json' } }), 400, /empty/);
    assertEnvelope(
      await api(s.url, 'POST', '/v1/login', { body: 'username=admin', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
      415,
      /not supported; send application\/json/,
    );
  });

  it('refuses an oversized body with 413', async () => {
    const r = await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: 'x'.repeat(4000) } });
    assertEnvelope(r, 413, /larger than the 2048-byte limit/);
  });

  it('answers 404 in the envelope for an unknown route', async () => {
    assertEnvelope(await api(s.url, 'GET', '/nope?x=1'), 404, /no route for GET \/nope/);
  });

  it('rate-limits failed logins with 429 and Retry-After', async () => {
    await api(s.url, 'POST', '/api/users', {
      token: await login(s.url),
      body: { name: 'victim', password: 'victim-password' },
    });
    for (let i = 0; i < 5; i++) {
      assertEnvelope(await api(s.url, 'POST', '/v1/login', { body: { username: 'victim', password: 'bad' } }), 401, /wrong user name or password/);
    }
    const r = await api(s.url, 'POST', '/v1/login', { body: { username: 'victim', password: 'victim-password' } });
    assertEnvelope(r, 429, /too many failed logins/);
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    clock.advance(301_000);
  });

  it('answers CORS preflights and tags answers for browsers', async () => {
    const pre = await fetch(s.url + '/v1/login', {
      method: 'OPTIONS',
      headers: { origin: 'http://example.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-auth-token' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /x-auth-token/);
    const r = await fetch(s.url + '/healthz', { headers: { origin: 'http://example.test' } });
    assert.equal(r.headers.get('access-control-allow-origin'), '*');
  });

  it('serves healthz, readyz and Prometheus metrics', async () => {
    assert.equal((await api(s.url, 'GET', '/healthz')).status, 200);
    const ready = await api<{ store: string }>(s.url, 'GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.data.store, 'sqlite');
    const m = await (await fetch(s.url + '/metrics')).text();
    assert.match(m, /herald_connections/);
    assert.match(m, /herald_store_seconds_bucket\{le="[\d.]+",op="getUserByName"\}/);
    assert.match(m, /^process_cpu_user_seconds_total /m);
    assert.doesNotMatch(m, /herald_process_/);
  });
});

describe('HTTP API: users and roles', () => {
  let s: TestServer;
  let admin: string;
  before(async () => {
    s = await startServer();
    admin = await login(s.url);
  });
  after(() => s.stop());

  it('lets an admin create, list, change and disable users; a user gets 403', async () => {
    const c = await api<{ id: string; role: string }>(s.url, 'POST', '/api/users', {
      token: admin,
      body: { name: 'carol', password: 'carol-password', role: 'user' },
    });
    assert.equal(c.status, 200);
    assert.equal(c.body.data.role, 'user');
    assertEnvelope(await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'carol', password: 'carol-password' } }), 409, /already exists/);
    assertEnvelope(await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'bad/name', password: 'carol-password' } }), 400, /body\/name must match/);
    assertEnvelope(await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'dave', password: 'short' } }), 400, /password/);
    assertEnvelope(await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'dave', password: 'long-enough', role: 'root' } }), 400, /role/);

    const carol = await login(s.url, 'carol', 'carol-password');
    assertEnvelope(await api(s.url, 'GET', '/api/users', { token: carol }), 403, /needs the admin role; you are "carol" \(user\)/);
    const list = await api<{ name: string }[]>(s.url, 'GET', '/api/users', { token: admin });
    assert.deepEqual(list.body.data.map((u) => u.name), ['admin', 'carol']);

    const d = await api<{ disabled: boolean }>(s.url, 'PATCH', `/api/users/${c.body.data.id}`, { token: admin, body: { disabled: true } });
    assert.equal(d.body.data.disabled, true);
    assertEnvelope(await api(s.url, 'GET', '/v1/me', { token: carol }), 401, /invalid or expired/);
    assertEnvelope(await api(s.url, 'POST', '/v1/login', { body: { username: 'carol', password: 'carol-password' } }), 403, /disabled/);
    assertEnvelope(await api(s.url, 'PATCH', '/api/users/9999', { token: admin, body: { disabled: true } }), 404, /no user with id 9999/);
    assertEnvelope(await api(s.url, 'PATCH', `/api/users/${c.body.data.id}`, { token: admin, body: {} }), 400, /fewer than 1/);
  });

  it('revokes every token of a user', async () => {
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'erin', password: 'erin-password' } });
    const t1 = await login(s.url, 'erin', 'erin-password');
    const t2 = await login(s.url, 'erin', 'erin-password');
    const id = (await api<{ userId: string }>(s.url, 'GET', '/v1/me', { token: t1 })).body.data.userId;
    const r = await api<{ revoked: number }>(s.url, 'POST', `/api/users/${id}/revoke-tokens`, { token: admin });
    assert.equal(r.body.data.revoked, 2);
    assert.equal((await api(s.url, 'GET', '/v1/me', { token: t2 })).status, 401);
  });
});
