/**
 * Credential attacks from outside (issue 13), against a real server:
 *
 * - Wrong tokens counted as failed password logins (item 9): garbage tokens
 *   over MQTT locked `admin` out of HTTP login from the same address, and
 *   anyone could lock `admin` out by name. Password failures now lock the
 *   (name, address) pair only; token failures have their own limit.
 * - A swept token (fidelity): presented again, it is "token expired", not
 *   "authentication failed".
 *
 * Client addresses are simulated over HTTP with `trustProxy` and X-Forwarded-For.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader, wsUrl } from '../helpers/stomp.js';

const from = (address: string) => ({ 'x-forwarded-for': address });

describe('credentials: failed logins lock the pair, not the name or the address', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ trustProxy: true, loginMaxAttempts: 10, tokenFailuresPerAddress: 5 });
  });
  after(() => s.stop());

  it('12 MQTT CONNECTs with garbage tokens as player2 do not lock admin out of HTTP login from the same address', async () => {
    const url = `mqtt://127.0.0.1:${s.server.address('mqtt').port}`;
    for (let i = 0; i < 12; i++) {
      const refused = await mqtt
        .connectAsync(url, { username: 'player2', password: `garbage-token-${i}-xxxxxxxxxx`, reconnectPeriod: 0, connectTimeout: 5000 })
        .then(
          async (c) => {
            await c.endAsync();
            return false;
          },
          () => true,
        );
      assert.ok(refused, `CONNECT ${i} refused`);
    }
    const r = await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: ADMIN_PASSWORD } });
    assert.equal(r.status, 200, r.body.message);
  });

  it('15 wrong passwords for admin from address A lock the pair A+admin, and not admin from address B', async () => {
    const A = '203.0.113.10';
    const B = '198.51.100.20';
    const statuses: number[] = [];
    for (let i = 0; i < 15; i++) {
      statuses.push((await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: 'guess-' + i }, headers: from(A) })).status);
    }
    assert.deepEqual(statuses, [...Array<number>(10).fill(401), ...Array<number>(5).fill(429)]);
    const locked = await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: ADMIN_PASSWORD }, headers: from(A) });
    assert.equal(locked.status, 429, 'the pair is locked, even for the right password');
    assert.match(locked.body.message, /too many failed logins as "admin" from this address; try again in \d+ s/);
    assert.ok(Number(locked.headers.get('retry-after')) > 0);
    const other = await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: ADMIN_PASSWORD }, headers: from(B) });
    assert.equal(other.status, 200, `admin from B: ${other.body.message}`);
    // Another user from A is not affected either.
    const admin = await login(s.url);
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'alice', password: 'alice-password' } });
    const alice = await api(s.url, 'POST', '/v1/login', { body: { username: 'alice', password: 'alice-password' }, headers: from(A) });
    assert.equal(alice.status, 200, alice.body.message);
  });

  it('garbage tokens beyond tokenFailuresPerAddress are refused as rate-limited, and do not touch password logins', async () => {
    const C = '192.0.2.30';
    for (let i = 0; i < 5; i++) {
      const r = await api(s.url, 'GET', '/v1/me', { token: `garbage-token-${i}-yyyyyyyyyy`, headers: from(C) });
      assert.equal(r.status, 401, r.body.message);
    }
    const limited = await api(s.url, 'GET', '/v1/me', { token: 'garbage-token-9-yyyyyyyyyy', headers: from(C) });
    assert.equal(limited.status, 429, limited.body.message);
    assert.match(limited.body.message, /too many failed token presentations from this address/);
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    const pw = await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: ADMIN_PASSWORD }, headers: from(C) });
    assert.equal(pw.status, 200, `password login from the same address: ${pw.body.message}`);
  });
});

describe('credentials: a flood of password checks costs a bounded amount of CPU', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ trustProxy: true });
  });
  after(() => s.stop());

  it('120 concurrent logins with rotating names: past the waiting room they are refused at once (429), and a real login still works after', async () => {
    const t0 = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        api(s.url, 'POST', '/v1/login', { body: { username: `nobody-${i}`, password: 'guess' }, headers: { 'x-forwarded-for': `10.1.${i >> 8}.${i & 255}` } }),
      ),
    );
    const statuses = answers.map((a) => a.status);
    const busy = answers.filter((a) => a.status === 429);
    assert.ok(busy.length >= 60, `only ${busy.length} of 120 were refused as busy: ${statuses.join(',')}`);
    assert.match(busy[0]!.body.message, /too many logins are being checked/);
    assert.ok(statuses.every((st) => st === 401 || st === 429), statuses.join(','));
    // The checks that ran did not pile up: at most the waiting room's worth of hashes (2 at a time).
    assert.ok(Date.now() - t0 < 15_000);
    assert.ok((await login(s.url)).length > 0);
  });
});

describe('credentials: a swept token is "token expired" in every protocol', () => {
  const clock = new ManualClock(Date.now());
  let s: TestServer;
  let token: string;
  before(async () => {
    s = await startServer({ tokenIdleSeconds: 600 }, clock);
    token = await login(s.url);
    clock.advance(601_000);
    await s.server.ctx.auth.sweep(); // drops it from memory and purges dead tokens from the store
  });
  after(() => s.stop());

  it('HTTP: 401 token expired', async () => {
    const r = await api(s.url, 'GET', '/v1/me', { token });
    assert.equal(r.status, 401);
    assert.match(r.body.message, /token expired/);
  });

  it('STOMP: ERROR "token expired"; over WebSocket the close code is 4401', async () => {
    const tcp = await RawStomp.tcp(s.server.address('stomp').port);
    const f = await tcp.connect({ login: 'admin', passcode: token });
    assert.equal(f.command, 'ERROR');
    assert.equal(frameHeader(f, 'message'), 'token expired');
    const ws = await RawStomp.ws(wsUrl(s.url, '/stomp'));
    const closed = new Promise<number>((r) => ws.socket.once('close', (code) => r(code)));
    assert.equal(frameHeader(await ws.connect({ passcode: token }), 'message'), 'token expired');
    assert.equal(await closed, 4401);
  });
});
