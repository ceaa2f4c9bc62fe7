/**
 * The connect hook's client against a real HTTP server in the test: allow,
 * deny with a reason, a timeout, a 5xx, answers that are not the contract,
 * caching per credential, one request for concurrent attempts, expiry, and
 * the cap on requests waiting for a slow back end.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import pino from 'pino';
import { ManualClock } from '../../src/clock.js';
import { AuthHook, readAnswer, type ConnectAttempt } from '../../src/core/auth-hook.js';
import { AuthError } from '../../src/core/principal.js';

type Handler = (body: Record<string, unknown>, res: ServerResponse) => void;

describe('the connect hook client', () => {
  let server: Server;
  let url: string;
  let handler: Handler;
  const seen: Record<string, unknown>[] = [];
  const clock = new ManualClock(1_700_000_000_000);
  const provisioned: string[] = [];

  before(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as Record<string, unknown>;
        seen.push(body);
        handler(body, res);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  beforeEach(() => {
    seen.length = 0;
    provisioned.length = 0;
  });

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const hook = (over: Partial<{ timeoutMs: number; cacheSeconds: number }> = {}): AuthHook =>
    new AuthHook({
      url,
      timeoutMs: over.timeoutMs ?? 2000,
      cacheSeconds: over.cacheSeconds ?? 60,
      clock,
      log: pino({ level: 'silent' }),
      provision: async (name) => {
        provisioned.push(name);
        return 'id-' + name;
      },
    });
  const attempt = (password: string, extra: Partial<ConnectAttempt> = {}): ConnectAttempt => ({
    protocol: 'mqtt',
    transport: 'tcp',
    username: 'alice',
    password,
    clientId: 'dev-1',
    remoteAddress: '127.0.0.1',
    ...extra,
  });
  const refusal = (code: string, message: RegExp) => (err: unknown) => err instanceof AuthError && err.code === code && message.test(err.message);

  it('posts what the client presented and builds the principal from an allow', async () => {
    handler = (_b, res) => json(res, 200, { allow: true, user: 'alice', roles: ['service'], expiresAt: (clock.now() + 3_600_000) / 1000, publish: ['a/#'], subscribe: ['b/+'] });
    const p = await hook().decide(attempt('s3cret', { certificateSubject: 'CN=dev', path: '/mqtt', transport: 'ws', device: 'web' }));
    assert.deepEqual(seen, [{ protocol: 'mqtt', transport: 'ws', username: 'alice', password: 's3cret', clientId: 'dev-1', remoteAddress: '127.0.0.1', certificateSubject: 'CN=dev', path: '/mqtt', device: 'web' }]);
    assert.equal(p.userId, 'id-alice');
    assert.equal(p.role, 'service');
    assert.deepEqual(p.grants, { publish: ['a/#'], subscribe: ['b/+'] });
    assert.equal(p.credential.kind, 'expiring');
    assert.equal(p.credential.kind === 'expiring' && p.credential.expiresAt, clock.now() + 3_600_000);
    assert.deepEqual(provisioned, ['alice']);
  });

  it('refuses with the back end\'s reason, and caches allow and deny per credential for cacheSeconds', async () => {
    handler = (b, res) => json(res, 200, b['password'] === 'good' ? { allow: true, user: 'alice' } : { allow: false, reason: 'account suspended' });
    const h = hook({ cacheSeconds: 30 });
    await assert.rejects(h.decide(attempt('bad')), refusal('bad_credentials', /^account suspended$/));
    await assert.rejects(h.decide(attempt('bad')), refusal('bad_credentials', /^account suspended$/));
    await h.decide(attempt('good'));
    await h.decide(attempt('good', { clientId: 'another-device' }));
    assert.equal(h.requests, 2, 'one request per credential within the cache time');
    clock.advance(31_000);
    await h.decide(attempt('good'));
    assert.equal(h.requests, 3, 'asked again once the cache time is over');
    const none = hook({ cacheSeconds: 0 });
    await none.decide(attempt('good'));
    await none.decide(attempt('good'));
    assert.equal(none.requests, 2, 'cacheSeconds 0 asks every time');
  });

  it('shares one request between concurrent attempts with the same credential', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    handler = (_b, res) => void gate.then(() => json(res, 200, { allow: true, user: 'alice' }));
    const h = hook();
    const all = Promise.all([1, 2, 3, 4, 5].map(() => h.decide(attempt('same'))));
    await new Promise((r) => setTimeout(r, 50));
    release();
    assert.equal((await all).length, 5);
    assert.equal(h.requests, 1);
  });

  it('a timeout, a 5xx, a redirect or an answer that is not the contract: refused as unavailable, not cached, nothing hangs', async () => {
    const h = hook({ timeoutMs: 200 });
    handler = () => undefined; // never answers
    const started = Date.now();
    await assert.rejects(h.decide(attempt('t')), refusal('unavailable', /no answer within 200 ms/));
    assert.ok(Date.now() - started < 2000, 'the timeout holds');
    handler = (_b, res) => json(res, 503, { error: 'down' });
    await assert.rejects(h.decide(attempt('t')), refusal('unavailable', /HTTP 503/));
    handler = (_b, res) => res.writeHead(302, { location: 'http://127.0.0.1:1/' }).end();
    await assert.rejects(h.decide(attempt('t')), refusal('unavailable', /could not decide/));
    handler = (_b, res) => res.writeHead(200).end('<html>');
    await assert.rejects(h.decide(attempt('t')), refusal('unavailable', /not JSON/));
    handler = (_b, res) => json(res, 200, { allow: 'yes' });
    await assert.rejects(h.decide(attempt('t')), refusal('unavailable', /"allow" must be true or false/));
    handler = (_b, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('"' + 'x'.repeat(70_000) + '"');
    await assert.rejects(h.decide(attempt('t')), refusal('unavailable', /over 65536 bytes/));
    handler = (_b, res) => json(res, 200, { allow: true, user: 'alice' });
    await h.decide(attempt('t'));
    assert.equal(h.requests, 7, 'no failure was cached');
  });

  it('an expiresAt already past refuses as expired', async () => {
    handler = (_b, res) => json(res, 200, { allow: true, user: 'alice', expiresAt: new Date(clock.now() - 1000).toISOString() });
    await assert.rejects(hook().decide(attempt('old')), refusal('token_expired', /expired/));
  });

  it('refuses at once past the cap of requests waiting on a slow back end', async () => {
    const waiting: ServerResponse[] = [];
    handler = (_b, res) => void waiting.push(res);
    const h = hook({ timeoutMs: 5000 });
    const pending = Array.from({ length: 256 }, (_, i) => h.decide(attempt('p' + i)).catch((e: unknown) => e));
    await assert.rejects(h.decide(attempt('one-too-many')), refusal('unavailable', /too many logins are waiting/));
    while (waiting.length < 256) await new Promise((r) => setTimeout(r, 10));
    for (const res of waiting) json(res, 200, { allow: false, reason: 'no' });
    for (const e of await Promise.all(pending)) assert.ok(e instanceof AuthError && e.code === 'bad_credentials');
  });

  it('reads answers strictly', () => {
    assert.throws(() => readAnswer({ allow: true, user: 'has space' }), /"user" must be a user name/);
    assert.throws(() => readAnswer({ allow: true, user: 'a', roles: 'admin' }), /"roles" must be a list/);
    assert.throws(() => readAnswer({ allow: true, user: 'a', publish: [''] }), /"publish" must be a list/);
    assert.throws(() => readAnswer({ allow: true, user: 'a', expiresAt: 'soon' }), /"expiresAt" must be/);
    assert.throws(() => readAnswer([]), /not a JSON object/);
    assert.deepEqual(readAnswer({ allow: false }), { allow: false, reason: 'refused by the application' });
    const admin = readAnswer({ allow: true, user: 'a', roles: ['user', 'admin'] });
    assert.equal(admin.allow && admin.role, 'admin');
  });
});
