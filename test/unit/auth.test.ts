import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it, beforeEach, afterEach } from 'node:test';
import { SignJWT, generateKeyPair, exportSPKI } from 'jose';
import { pino } from 'pino';
import { ManualClock } from '../../src/clock.js';
import { loadConfig, type ConfigInput } from '../../src/config.js';
import { Auth, AuthError, EXPIRED_MEMORY_MS, NAME_DELAY_FIRST_MS, NAME_DELAY_MAX_MS, hashToken } from '../../src/core/auth.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

const silent = pino({ level: 'silent' });

async function setup(overrides: ConfigInput = {}) {
  const clock = new ManualClock();
  const store = new SqliteStore({ dataDir: ':memory:' });
  const config = loadConfig({ env: {}, cwd: '/', overrides: { tokenIdleSeconds: 600, ...overrides } });
  const auth = new Auth(store, config, clock, silent);
  await auth.start();
  return { clock, store, auth };
}

const code = (c: string) => (e: unknown) => e instanceof AuthError && e.code === c;

describe('auth: token hashes', () => {
  it('stores a token as the hex SHA-256 of its text, as tokens already stored were hashed', () => {
    assert.equal(hashToken('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(hashToken('токен ✓'), createHash('sha256').update('токен ✓').digest('hex'), 'UTF-8 text');
  });
});

describe('auth: passwords and login tokens', () => {
  let t: Awaited<ReturnType<typeof setup>>;
  beforeEach(async () => {
    t = await setup();
    await t.auth.createUser('alice', 'correct horse', 'user');
  });
  afterEach(async () => {
    t.auth.stop();
    await t.store.close();
  });

  it('does not count attempts the store could not judge: clients retrying through an outage are not locked out after it', async () => {
    const getUserByName = t.store.getUserByName.bind(t.store);
    t.store.getUserByName = async () => {
      throw new Error('connection refused');
    };
    for (let i = 0; i < 30; i++) await assert.rejects(t.auth.login('alice', 'correct horse', '127.0.0.1'), /connection refused/);
    t.store.getUserByName = getUserByName;
    const { user } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    assert.equal(user.name, 'alice');
    // Wrong passwords still count, and lock the pair as before.
    for (let i = 0; i < 10; i++) await assert.rejects(t.auth.login('alice', 'wrong', '127.0.0.1'), code('bad_credentials'));
    await assert.rejects(t.auth.login('alice', 'correct horse', '127.0.0.1'), code('rate_limited'));
  });

  it('logs in with the right password and refuses a wrong one or an unknown user', async () => {
    const { token, user } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    assert.match(token, /^[A-Za-z0-9_-]{22}$/, '128-bit base64url token');
    assert.equal(user.name, 'alice');
    await assert.rejects(t.auth.login('alice', 'wrong', '127.0.0.1'), code('bad_credentials'));
    await assert.rejects(t.auth.login('mallory', 'x', '127.0.0.1'), code('bad_credentials'));
  });

  it('stores only the hash of a token', async () => {
    const { token } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    assert.equal(await t.store.getToken(token), null);
    assert.notEqual(await t.store.getToken(hashToken(token)), null);
  });

  it('kills a token after the idle time, and each renewing call extends it', async () => {
    const { token } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    t.clock.advance(599_000);
    await t.auth.authenticate(token, { renew: true }); // renewed at 599 s
    t.clock.advance(599_000);
    const p = await t.auth.authenticate(token, { renew: false }); // 1198 s: alive thanks to renewal
    assert.equal(p.name, 'alice');
    t.clock.advance(1_000); // 600 s since the last renewing call
    await assert.rejects(t.auth.authenticate(token, { renew: true }), (e: unknown) => {
      return e instanceof AuthError && e.code === 'token_expired' && /expired/.test(e.message);
    });
  });

  it('does not renew on non-renewing use (socket traffic)', async () => {
    const { token } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    t.clock.advance(300_000);
    await t.auth.authenticate(token, { renew: false });
    t.clock.advance(300_000);
    await assert.rejects(t.auth.authenticate(token, { renew: false }), code('token_expired'));
  });

  it('persists renewals so a restart does not lose them', async () => {
    const { token } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    t.clock.advance(500_000);
    await t.auth.authenticate(token, { renew: true });
    await new Promise((r) => setImmediate(r));
    const fresh = new Auth(t.store, loadConfig({ env: {}, cwd: '/' }), t.clock, silent);
    t.clock.advance(500_000); // 1000 s after login, 500 s after the renewal
    assert.equal((await fresh.authenticate(token, { renew: false })).name, 'alice');
  });

  it('refuses unknown and empty tokens', async () => {
    await assert.rejects(t.auth.authenticate('AAAAAAAAAAAAAAAAAAAAAA', { renew: true }), code('invalid_token'));
    await assert.rejects(t.auth.authenticate('', { renew: true }), code('invalid_token'));
  });

  it('tells watchers "expired" when the idle time passes and "revoked" on logout', async () => {
    const a = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    const b = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    const pa = await t.auth.authenticate(a.token, { renew: false });
    const pb = await t.auth.authenticate(b.token, { renew: false });
    const deaths: string[] = [];
    t.auth.watch(pa, (r) => deaths.push('a:' + r));
    t.auth.watch(pb, (r) => deaths.push('b:' + r));
    await t.auth.revokeToken(b.token);
    assert.deepEqual(deaths, ['b:revoked']);
    await assert.rejects(t.auth.authenticate(b.token, { renew: true }), code('invalid_token'));
    t.clock.advance(599_999);
    await t.auth.sweep();
    assert.deepEqual(deaths, ['b:revoked']);
    t.clock.advance(1);
    await t.auth.sweep();
    assert.deepEqual(deaths, ['b:revoked', 'a:expired']);
    await t.auth.sweep();
    assert.equal(deaths.length, 2, 'a death is told once');
  });

  it('stops telling a watcher once it unwatches', async () => {
    const a = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    const p = await t.auth.authenticate(a.token, { renew: false });
    let told = 0;
    const unwatch = t.auth.watch(p, () => told++);
    unwatch();
    await t.auth.revokeToken(a.token);
    assert.equal(told, 0);
  });

  it('revokes every token of a user and refuses a disabled user', async () => {
    const a = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    const user = (await t.store.getUserByName('alice'))!;
    assert.equal(await t.auth.revokeUser(user.id), 1);
    await assert.rejects(t.auth.authenticate(a.token, { renew: true }), code('invalid_token'));
    await t.store.updateUser(user.id, { disabled: true });
    await assert.rejects(t.auth.login('alice', 'correct horse', '127.0.0.1'), code('user_disabled'));
  });

  it('script tokens do not idle out but honour an absolute expiry', async () => {
    const user = (await t.store.getUserByName('alice'))!;
    const forever = await t.auth.issueToken(user, { idleExpiry: false });
    const hour = await t.auth.issueToken(user, { idleExpiry: false, expiresAt: t.clock.now() + 3_600_000 });
    t.clock.advance(3_600_000);
    assert.equal((await t.auth.authenticate(forever, { renew: false })).name, 'alice');
    await assert.rejects(t.auth.authenticate(hour, { renew: false }), code('token_expired'));
  });
});

describe('auth: login rate limit', () => {
  it('locks the (name, address) pair after loginMaxAttempts and tells when to retry', async () => {
    const t = await setup({ loginMaxAttempts: 3, loginWindowSeconds: 60 });
    await t.auth.createUser('bob', 'bob-password', 'user');
    for (let i = 0; i < 3; i++) await assert.rejects(t.auth.login('bob', 'nope', '10.0.0.1'), code('bad_credentials'));
    await assert.rejects(t.auth.login('bob', 'bob-password', '10.0.0.1'), (e: unknown) => {
      return e instanceof AuthError && e.code === 'rate_limited' && e.retryAfterSeconds === 60 && /"bob" from this address/.test(e.message);
    });
    // The same name from another address, and another name from the same address, are untouched.
    assert.equal((await t.auth.login('bob', 'bob-password', '10.0.0.2')).user.name, 'bob');
    await t.auth.createUser('carol', 'carol-password', 'user');
    assert.equal((await t.auth.login('carol', 'carol-password', '10.0.0.1')).user.name, 'carol');
    t.clock.advance(60_000);
    assert.equal((await t.auth.login('bob', 'bob-password', '10.0.0.1')).user.name, 'bob');
    t.auth.stop();
  });

  it('clears the pair on a successful login', async () => {
    const t = await setup({ loginMaxAttempts: 3, loginWindowSeconds: 60 });
    await t.auth.createUser('bob', 'bob-password', 'user');
    for (let i = 0; i < 2; i++) await assert.rejects(t.auth.login('bob', 'nope', '10.0.0.1'), code('bad_credentials'));
    await t.auth.login('bob', 'bob-password', '10.0.0.1');
    for (let i = 0; i < 2; i++) await assert.rejects(t.auth.login('bob', 'nope', '10.0.0.1'), code('bad_credentials'));
    assert.equal((await t.auth.login('bob', 'bob-password', '10.0.0.1')).user.name, 'bob', 'two after the success, not four');
    t.auth.stop();
  });

  it('counts parallel guesses before checking them, so a burst cannot overrun the limit', async () => {
    const t = await setup({ loginMaxAttempts: 3, loginWindowSeconds: 60 });
    await t.auth.createUser('bob', 'bob-password', 'user');
    const answers = await Promise.allSettled(Array.from({ length: 8 }, () => t.auth.login('bob', 'nope', '10.0.0.1')));
    const codes = answers.map((a) => (a.status === 'rejected' && a.reason instanceof AuthError ? a.reason.code : 'ok'));
    assert.equal(codes.filter((c) => c === 'bad_credentials').length, 3, codes.join(','));
    assert.equal(codes.filter((c) => c === 'rate_limited').length, 5);
    t.auth.stop();
  });

  it('slows a name failing from many addresses down instead of blocking it, and never a good-record address', async () => {
    const t = await setup({ loginMaxAttempts: 3, loginWindowSeconds: 60 });
    t.auth.pause = async () => undefined;
    await t.auth.createUser('admin', 'admin-password', 'admin');
    await t.auth.login('admin', 'admin-password', '192.0.2.1'); // the admin's usual address
    // Failures from one address: that pair is locked, nobody else is slowed.
    for (let i = 0; i < 3; i++) await assert.rejects(t.auth.login('admin', 'nope', '10.9.0.1'), code('bad_credentials'));
    assert.equal(await t.auth.loginSlowdownMs('admin', '198.51.100.7'), 0, 'one failing address does not slow the name');
    // Many addresses: a growing delay for addresses without a good record, capped.
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      await assert.rejects(t.auth.login('admin', 'nope', `10.9.1.${i}`), code('bad_credentials'));
      delays.push(await t.auth.loginSlowdownMs('ADMIN', '198.51.100.7'));
    }
    assert.ok(delays[0]! >= NAME_DELAY_FIRST_MS, `delays ${delays.join(',')}`);
    for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! >= delays[i - 1]!, `growing: ${delays.join(',')}`);
    assert.equal(delays.at(-1), NAME_DELAY_MAX_MS, 'capped');
    assert.equal(await t.auth.loginSlowdownMs('admin', '192.0.2.1'), 0, 'the address admin logged in from before');
    assert.equal((await t.auth.login('admin', 'admin-password', '192.0.2.1')).user.name, 'admin');
    // Never a block: a new address gets in, after the delay.
    const paused: number[] = [];
    t.auth.pause = async (ms) => void paused.push(ms);
    assert.equal((await t.auth.login('admin', 'admin-password', '198.51.100.7')).user.name, 'admin');
    assert.deepEqual(paused, [NAME_DELAY_MAX_MS], 'slowed down');
    assert.equal(await t.auth.loginSlowdownMs('admin', '198.51.100.7'), 0, 'now a good-record address');
    t.auth.stop();
  });
});

describe('auth: failed token presentations', () => {
  it('have their own limit per address and never count against password logins', async () => {
    const t = await setup({ loginMaxAttempts: 3, loginWindowSeconds: 60, tokenFailuresPerAddress: 5 });
    await t.auth.createUser('alice', 'correct horse', 'user');
    const good = (await t.auth.login('alice', 'correct horse', '10.0.0.1')).token;
    for (let i = 0; i < 5; i++) {
      await assert.rejects(t.auth.authenticate(`garbage-token-number-${i}`, { renew: true, address: '10.0.0.1' }), code('invalid_token'));
    }
    await assert.rejects(t.auth.authenticate('garbage-token-number-9', { renew: true, address: '10.0.0.1' }), (e: unknown) => {
      return e instanceof AuthError && e.code === 'rate_limited' && e.retryAfterSeconds === 60 && /failed token presentations/.test(e.message);
    });
    // A live token this node holds still works from there; other addresses are untouched; passwords too.
    assert.equal((await t.auth.authenticate(good, { renew: true, address: '10.0.0.1' })).name, 'alice');
    await assert.rejects(t.auth.authenticate('garbage-token-number-9', { renew: true, address: '10.0.0.2' }), code('invalid_token'));
    assert.equal((await t.auth.login('alice', 'correct horse', '10.0.0.1')).user.name, 'alice');
    assert.equal(await t.auth.loginSlowdownMs('alice', '10.0.0.3'), 0);
    t.clock.advance(60_000);
    await assert.rejects(t.auth.authenticate('garbage-token-number-9', { renew: true, address: '10.0.0.1' }), code('invalid_token'));
    t.auth.stop();
  });

  it('count a token refused lately once, however often it comes back', async () => {
    const t = await setup({ tokenFailuresPerAddress: 3 });
    for (let i = 0; i < 20; i++) await assert.rejects(t.auth.authenticate('the-same-stale-token', { renew: true, address: '10.0.0.1' }), code('invalid_token'));
    await assert.rejects(t.auth.authenticate('another-one', { renew: true, address: '10.0.0.1' }), code('invalid_token'));
    t.auth.stop();
  });

  it('are not counted without an address (a token tried where a password may go)', async () => {
    const t = await setup({ tokenFailuresPerAddress: 1 });
    for (let i = 0; i < 5; i++) await assert.rejects(t.auth.authenticate(`guess-${i}`, { renew: true }), code('invalid_token'));
    await assert.rejects(t.auth.authenticate('guess-9', { renew: true, address: '10.0.0.1' }), code('invalid_token'));
    t.auth.stop();
  });
});

describe('auth: dead tokens and renewal by protocol traffic', () => {
  it('answers "token expired" for a token the sweep dropped and purged, until EXPIRED_MEMORY_MS has passed', async () => {
    const t = await setup();
    await t.auth.createUser('alice', 'correct horse', 'user');
    const { token } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    t.clock.advance(600_000);
    await t.auth.sweep(); // drops it from memory and purges the store's dead tokens
    const fresh = new Auth(t.store, loadConfig({ env: {}, cwd: '/', overrides: { tokenIdleSeconds: 600 } }), t.clock, silent);
    for (const auth of [t.auth, fresh]) {
      await assert.rejects(auth.authenticate(token, { renew: true }), code('token_expired'));
      await assert.rejects(auth.authenticate(token, { renew: true }), code('token_expired'), 'still expired the second time');
    }
    t.clock.advance(EXPIRED_MEMORY_MS + 1);
    await t.auth.sweep();
    await assert.rejects(fresh.authenticate(token, { renew: true }), code('invalid_token'), 'forgotten after the memory');
    t.auth.stop();
  });

  it('renewPrincipal extends an idle token like an HTTP call, without a store write per call', async () => {
    const t = await setup();
    await t.auth.createUser('alice', 'correct horse', 'user');
    const { token } = await t.auth.login('alice', 'correct horse', '127.0.0.1');
    const p = await t.auth.authenticate(token, { renew: false });
    let touches = 0;
    const touch = t.store.touchToken.bind(t.store);
    t.store.touchToken = (hash, at) => {
      touches++;
      return touch(hash, at);
    };
    for (let i = 0; i < 100; i++) {
      t.clock.advance(5_000);
      t.auth.renewPrincipal(p);
    }
    assert.ok(touches <= 40 && touches > 0, `${touches} store writes for 100 renewals over 500 s`);
    t.clock.advance(599_000);
    assert.equal((await t.auth.authenticate(token, { renew: false })).name, 'alice', 'alive 1099 s after login');
    // Other credentials have nothing to renew.
    t.auth.renewPrincipal({ userId: 'x', name: 'x', role: 'user', credential: { kind: 'password' } });
    t.auth.stop();
  });

  it('ends sessions of an expiring credential at expiresAt, and unwatching forgets them', async () => {
    const t = await setup();
    const expiresAt = t.clock.now() + 30_000;
    const p = { userId: 'app:shop:u1', name: 'u1', role: 'user' as const, credential: { kind: 'expiring' as const, key: 'user-token:1', expiresAt } };
    const deaths: string[] = [];
    t.auth.watch(p, (r) => deaths.push('a:' + r));
    const unwatch = t.auth.watch(p, (r) => deaths.push('b:' + r));
    const other = t.auth.watch({ ...p, credential: { kind: 'expiring', key: 'user-token:2', expiresAt } }, (r) => deaths.push('c:' + r));
    unwatch();
    other();
    t.clock.advance(29_999);
    await t.auth.sweep();
    assert.deepEqual(deaths, []);
    t.clock.advance(1);
    await t.auth.sweep();
    assert.deepEqual(deaths, ['a:expired']);
    await t.auth.sweep();
    assert.deepEqual(deaths, ['a:expired'], 'told once');
    t.auth.stop();
  });

  it('ends sessions of an expiring credential when its user is revoked', async () => {
    const t = await setup();
    const alice = await t.auth.createUser('alice', 'correct horse', 'user');
    const deaths: string[] = [];
    t.auth.watch({ userId: alice.id, name: 'alice', role: 'user', credential: { kind: 'expiring', key: 'k', expiresAt: t.clock.now() + 60_000 } }, (r) => deaths.push(r));
    await t.auth.revokeUser(alice.id);
    assert.deepEqual(deaths, ['revoked']);
    t.auth.stop();
  });

  it("ends the password and certificate logins of a revoked user, here and on other nodes, and nobody else's", async () => {
    const t = await setup();
    const alice = await t.auth.createUser('alice', 'correct horse', 'user');
    const bob = await t.auth.createUser('bob', 'correct horse', 'user');
    const deaths: string[] = [];
    const watchAs = (tag: string, userId: string, name: string, kind: 'password' | 'certificate') =>
      t.auth.watch({ userId, name, role: 'user', credential: { kind } }, (r) => deaths.push(`${tag}:${r}`));
    watchAs('a1', alice.id, 'alice', 'password');
    const closed = watchAs('a2', alice.id, 'alice', 'password');
    watchAs('a3', alice.id, 'alice', 'certificate');
    watchAs('b', bob.id, 'bob', 'password');
    closed(); // a session that closed before the revocation is not told
    const changes: unknown[] = [];
    t.auth.onCredentialChange = (c) => changes.push(c);
    await t.auth.revokeUser(alice.id);
    assert.deepEqual(deaths.sort(), ['a1:revoked', 'a3:revoked']);
    assert.deepEqual(changes, [{ kind: 'tokens', hashes: [], userId: alice.id }], 'the other nodes are told which user');
    // Another node's revocation of bob reaches bob's password session here.
    t.auth.applyRemoteChange({ kind: 'tokens', hashes: [], userId: bob.id });
    assert.deepEqual(deaths.sort(), ['a1:revoked', 'a3:revoked', 'b:revoked']);
    // A user change that is not a revocation (a role change) ends nothing.
    watchAs('b2', bob.id, 'bob', 'password');
    t.auth.applyRemoteChange({ kind: 'user', userId: bob.id });
    assert.equal(deaths.length, 3);
    t.auth.stop();
  });
});

describe('auth: JWT', () => {
  const secret = 'a-long-shared-secret-for-hs256-tests';

  it('accepts an HS256 JWT with sub, and maps sub to an existing user', async () => {
    const t = await setup({ jwtSecret: secret });
    const alice = await t.auth.createUser('alice', 'correct horse', 'service');
    const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(t.clock.now() / 1000 + 60).sign(new TextEncoder().encode(secret));
    const p = await t.auth.authenticate(jwt, { renew: true });
    assert.equal(p.userId, alice.id);
    assert.equal(p.role, 'service');
    assert.equal(p.credential.kind, 'jwt');
    const ext = await new SignJWT({ role: 'admin', name: 'Ext' }).setProtectedHeader({ alg: 'HS256' }).setSubject('ext-42').sign(new TextEncoder().encode(secret));
    const q = await t.auth.authenticate(ext, { renew: true });
    assert.deepEqual([q.userId, q.name, q.role], ['ext-42', 'Ext', 'admin']);
    t.auth.stop();
  });

  it('refuses a bad signature, an expired JWT, a missing sub, a wrong issuer and alg none', async () => {
    const t = await setup({ jwtSecret: secret, jwtIssuer: 'backend' });
    const key = new TextEncoder().encode(secret);
    const now = t.clock.now() / 1000;
    const forged = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setIssuer('backend').sign(new TextEncoder().encode('another-secret-of-enough-length'));
    await assert.rejects(t.auth.authenticate(forged, { renew: true }), (e: unknown) => e instanceof AuthError && /signature/.test(e.message));
    const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setIssuer('backend').setExpirationTime(now - 10).sign(key);
    await assert.rejects(t.auth.authenticate(expired, { renew: true }), code('token_expired'));
    const nosub = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setIssuer('backend').sign(key);
    await assert.rejects(t.auth.authenticate(nosub, { renew: true }), (e: unknown) => e instanceof AuthError && /sub/.test(e.message));
    const wrongIss = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setIssuer('evil').sign(key);
    await assert.rejects(t.auth.authenticate(wrongIss, { renew: true }), (e: unknown) => e instanceof AuthError && /iss/.test(e.message));
    const none = Buffer.from('{"alg":"none"}').toString('base64url') + '.' + Buffer.from('{"sub":"x","iss":"backend"}').toString('base64url') + '.';
    await assert.rejects(t.auth.authenticate(none, { renew: true }), code('invalid_token'));
    t.auth.stop();
  });

  it('refuses the JWTs a user had before their tokens were revoked, and ends sessions using them', async () => {
    const t = await setup({ jwtSecret: secret });
    const key = new TextEncoder().encode(secret);
    const alice = await t.auth.createUser('alice', 'correct horse', 'user');
    const sign = (claims: { iat?: number; sub?: string }) => {
      const j = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(claims.sub ?? 'alice');
      if (claims.iat !== undefined) j.setIssuedAt(claims.iat);
      return j.sign(key);
    };
    const sec = () => Math.floor(t.clock.now() / 1000);
    const old = await sign({ iat: sec() - 10 }); // no exp: only revocation can end it
    const noIat = await sign({});
    const external = await sign({ sub: 'ext-7', iat: sec() - 10 });
    const p = await t.auth.authenticate(old, { renew: true });
    const ext = await t.auth.authenticate(external, { renew: true });
    const deaths: string[] = [];
    const extDeaths: string[] = [];
    t.auth.watch(p, (r) => deaths.push(r));
    t.auth.watch(ext, (r) => extDeaths.push(r));

    t.clock.advance(1000);
    assert.equal(await t.auth.revokeUser(alice.id), 0, 'alice had no login tokens');
    assert.deepEqual(deaths, ['revoked'], 'the session using her JWT is told at once');
    assert.deepEqual(extDeaths, [], "another subject's JWT is not touched");
    await assert.rejects(t.auth.authenticate(old, { renew: true }), (e: unknown) => e instanceof AuthError && e.code === 'invalid_token' && /issued before the tokens of user "alice" were revoked/.test(e.message));
    await assert.rejects(t.auth.authenticate(noIat, { renew: true }), (e: unknown) => e instanceof AuthError && /no iat/.test(e.message));
    // The revocation is stored (a restart or another node sees it), and a JWT issued after it works.
    assert.ok((await t.store.getUserById(alice.id))!.tokensValidAfter > 0);
    t.clock.advance(2000);
    const fresh = await sign({ iat: sec() });
    assert.equal((await t.auth.authenticate(fresh, { renew: true })).userId, alice.id);
    assert.equal((await t.auth.authenticate(external, { renew: true })).userId, 'ext-7');
    t.auth.stop();
  });

  it('accepts RS256 with the configured public key and tells watchers at exp', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const t = await setup({ jwtPublicKey: await exportSPKI(publicKey) });
    const exp = Math.floor(t.clock.now() / 1000) + 30;
    const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('device-1').setExpirationTime(exp).sign(privateKey);
    const p = await t.auth.authenticate(jwt, { renew: true });
    assert.equal(p.userId, 'device-1');
    const deaths: string[] = [];
    t.auth.watch(p, (r) => deaths.push(r));
    t.clock.advance(29_000);
    await t.auth.sweep();
    assert.deepEqual(deaths, []);
    t.clock.advance(2_000);
    await t.auth.sweep();
    assert.deepEqual(deaths, ['expired']);
    // HS256 is not accepted when only an RS256 key is configured
    const hs = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('x').sign(new TextEncoder().encode(secret));
    await assert.rejects(t.auth.authenticate(hs, { renew: true }), code('invalid_token'));
    t.auth.stop();
  });
});
