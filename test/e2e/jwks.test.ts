/**
 * JWTs checked with the keys of a JSON Web Key Set (`jwtJwksUrl`), served by
 * an HTTP server inside the test that counts its requests: RS256, ES256 and
 * EdDSA tokens log in over HTTP, MQTT and STOMP; an unknown kid fetches the
 * set again once (a rotated key then works), a flood of them at most once a
 * minute; alg none, alg/key mismatches and expired tokens are refused; a set
 * that cannot be fetched at start does not stop the server, and its tokens
 * are refused, saying why, until a retry gets it. Also `jwtPublicKey` as an
 * EC or Ed25519 key, and the configuration errors.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { SignJWT, type JWTPayload } from 'jose';
import mqtt from 'mqtt';
import { pino, type Logger } from 'pino';
import { ConfigError } from '../../src/config.js';
import { runCommand } from '../helpers/process.js';
import { rmSync } from 'node:fs';
import { api, login, startServer, tempDir, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';

type Alg = 'RS256' | 'ES256' | 'EdDSA';

interface Signer {
  alg: Alg;
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

function signer(alg: Alg, kid: string): Signer {
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
  return { alg, kid, ...pair };
}

/** A JWK of the set; `alg` and `use` written out unless told otherwise. */
function jwk(s: Signer, extra: Record<string, unknown> = { alg: s.alg, use: 'sig' }): Record<string, unknown> {
  return { ...s.publicKey.export({ format: 'jwk' }), kid: s.kid, ...extra };
}

function token(s: Signer, claims: JWTPayload = {}, header: { alg?: string; kid?: string | undefined } = {}): Promise<string> {
  const kid = 'kid' in header ? header.kid : s.kid;
  return new SignJWT({ role: 'user', ...claims })
    .setProtectedHeader({ alg: header.alg ?? s.alg, ...(kid !== undefined ? { kid } : {}) })
    .setSubject(typeof claims.sub === 'string' ? claims.sub : 'ext-' + s.kid)
    .setIssuedAt()
    .setExpirationTime(typeof claims.exp === 'number' ? claims.exp : '1h')
    .sign(s.privateKey);
}

const b64url = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

/** An HTTP server answering every GET with the current set (or what `answer` says), counting requests. */
class JwksServer {
  requests = 0;
  keys: Record<string, unknown>[] = [];
  answer: ((res: import('node:http').ServerResponse) => void) | undefined;
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<this> {
    this.server = createServer((_req, res) => {
      this.requests++;
      if (this.answer) return this.answer(res);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: this.keys }));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/.well-known/jwks.json`;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise((r) => this.server!.close(r));
    this.server = undefined;
  }
}

const me = (s: TestServer, jwt: string) => api<{ name: string; role: string; via: string }>(s.url, 'GET', '/v1/me', { headers: { authorization: `Bearer ${jwt}` } });

/** A logger whose lines are kept, for what the server says about the set. */
function capturingLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream) as unknown as Logger, lines };
}

describe('JWKS (jwtJwksUrl)', () => {
  const rsa = signer('RS256', 'rsa-1');
  const ec = signer('ES256', 'ec-1');
  const ed = signer('EdDSA', 'ed-1');
  let jwks: JwksServer;
  let s: TestServer;

  before(async () => {
    jwks = await new JwksServer().start();
    // The RSA key says alg and use; the EC key says neither; the Ed25519 key says use only.
    jwks.keys = [jwk(rsa), jwk(ec, {}), jwk(ed, { use: 'sig' })];
    s = await startServer({ jwtJwksUrl: jwks.url });
    await api(s.url, 'POST', '/api/users', { token: await login(s.url), body: { name: 'dana', password: 'dana-password', role: 'user' } });
  });
  after(async () => {
    await s.stop();
    await jwks.stop();
  });

  it('fetches the set once at start, and accepts RS256, ES256 and EdDSA tokens of its keys over HTTP, MQTT and STOMP', async () => {
    assert.equal(jwks.requests, 1);
    for (const k of [rsa, ec, ed]) {
      const outside = await me(s, await token(k));
      assert.equal(outside.status, 200, `${k.alg}: ${outside.body.message}`);
      assert.deepEqual(outside.body.data, { userId: `ext-${k.kid}`, name: `ext-${k.kid}`, role: 'user', via: 'jwt' });
      const jwt = await token(k, { sub: 'dana' });
      assert.equal((await me(s, jwt)).body.data.name, 'dana', `${k.alg}: a Herald user's sub`);

      const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${s.server.address('mqtt').port}`, { username: 'dana', password: jwt, protocolVersion: 5, reconnectPeriod: 0 });
      await device.endAsync();
      const stomp = await RawStomp.tcp(s.server.address('stomp').port);
      assert.equal((await stomp.connect({ login: 'dana', passcode: jwt })).command, 'CONNECTED', `${k.alg} over STOMP`);
    }
    assert.equal(jwks.requests, 1, 'known kids never fetch the set');
  });

  it('refuses alg none, an alg that does not fit the key, a forged signature and an expired token, saying why', async () => {
    const payload = { sub: 'dana', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600 };
    const refused = async (jwt: string, why: RegExp): Promise<void> => {
      const r = await me(s, jwt);
      assert.equal(r.status, 401, `${why}: ${r.body.message}`);
      assert.match(r.body.message, why);
    };
    await refused(`${b64url({ alg: 'none' })}.${b64url(payload)}.`, /JWT algorithm none is not accepted here/);
    await refused(`${b64url({ alg: 'none', kid: 'rsa-1' })}.${b64url(payload)}.`, /JWT algorithm none is not accepted here/);
    // The classic confusion: HS256 with the RSA public key (as the issuer publishes it) for the HMAC secret.
    const pemAsSecret = new TextEncoder().encode(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const confused = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(pemAsSecret);
    await refused(confused, /JWT algorithm HS256 is not accepted here: no jwtSecret is configured/);
    // A kid of the set with another algorithm than its key's.
    await refused(await token(ec, {}, { kid: 'rsa-1' }), /JWT algorithm ES256 does not fit key "rsa-1" of the JWKS, an RS256 key/);
    await refused(await token(rsa, {}, { kid: 'ed-1' }), /JWT algorithm RS256 does not fit key "ed-1" of the JWKS, an EdDSA key/);
    // A key of our own, under a kid of the set.
    await refused(await token({ ...signer('ES256', 'ec-1') }), /JWT signature does not verify/);
    await refused(await token(ec, { exp: Math.floor(Date.now() / 1000) - 60 }), /JWT expired/);
    await refused(`${b64url({ alg: 'ES384', kid: 'ec-1' })}.${b64url(payload)}.${'A'.repeat(128)}`, /JWT algorithm ES384 is not accepted here/);
    assert.equal(jwks.requests, 1, 'none of these fetched the set');
  });

  it('accepts a token without a kid when the set holds exactly one key for its algorithm', async () => {
    assert.equal((await me(s, await token(ed, {}, { kid: undefined }))).status, 200);
  });
});

describe('JWKS: unknown key ids', () => {
  let jwks: JwksServer;
  let s: TestServer;
  const first = signer('RS256', 'key-1');

  before(async () => {
    jwks = await new JwksServer().start();
    jwks.keys = [jwk(first)];
  });
  after(() => jwks.stop());

  it('fetches the set again for an unknown kid, so a rotated key works at once', async () => {
    s = await startServer({ jwtJwksUrl: jwks.url });
    try {
      assert.equal((await me(s, await token(first))).status, 200);
      const second = signer('ES256', 'key-2');
      jwks.keys = [jwk(second)];
      const before = jwks.requests;
      const r = await me(s, await token(second));
      assert.equal(r.status, 200, r.body.message);
      assert.equal(jwks.requests, before + 1, 'one fetch');
      assert.equal((await me(s, await token(second))).status, 200);
      assert.equal(jwks.requests, before + 1, 'a known kid does not fetch');
      // key-1 left the set with the rotation.
      assert.match((await me(s, await token(first))).body.message, /JWT key id "key-1" is not in the JWKS/);
    } finally {
      await s.stop();
    }
  });

  it('fetches at most once a minute, however many unknown kids come', async () => {
    jwks.keys = [jwk(first)];
    s = await startServer({ jwtJwksUrl: jwks.url });
    try {
      const before = jwks.requests;
      const flood = await Promise.all(Array.from({ length: 50 }, () => token(first, {}, { kid: randomUUID() })));
      const answers = await Promise.all(flood.map((jwt) => me(s, jwt)));
      for (const a of answers) {
        assert.equal(a.status, 401);
        assert.match(a.body.message, /^JWT key id "[0-9a-f-]+" is not in the JWKS at http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json \(fetched .*; an unknown key id fetches it again at most once a minute\)$/);
      }
      for (const jwt of flood.slice(0, 10)) assert.equal((await me(s, jwt)).status, 401);
      assert.equal(jwks.requests, before + 1, `50 unknown kids, then 10 again: ${jwks.requests - before} fetches`);
      // The price: a key rotated in within that minute waits for the next fetch (the schedule, or a reload).
      const late = signer('EdDSA', 'key-3');
      jwks.keys = [jwk(first), jwk(late)];
      assert.equal((await me(s, await token(late))).status, 401);
      assert.equal(jwks.requests, before + 1);
      const admin = await login(s.url);
      const reloaded = await api<{ jwks: { ok: boolean; keys: number } }>(s.url, 'POST', '/api/admin/reload', { token: admin });
      assert.equal(reloaded.status, 200, reloaded.body.message);
      assert.deepEqual(reloaded.body.data.jwks, { configured: true, ok: true, url: jwks.url, keys: 2 });
      assert.equal((await me(s, await token(late))).status, 200);
    } finally {
      await s.stop();
    }
  });
});

describe('JWKS: fetch failures', () => {
  it('starts while the set is unreachable, refuses its tokens saying why, and accepts them once a retry fetches it', async () => {
    const k = signer('ES256', 'late-1');
    const probe = await new JwksServer().start();
    const port = probe.port;
    await probe.stop(); // nothing listens there now
    const { log, lines } = capturingLog();
    const s = await startServer({ jwtJwksUrl: probe.url }, undefined, undefined, log);
    let jwks: JwksServer | undefined;
    try {
      const error = lines.find((l) => l['component'] === 'jwks' && l['level'] === 50);
      assert.ok(error, `an error is logged: ${JSON.stringify(lines)}`);
      assert.match(String(error['msg']), /^JWKS at http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json could not be fetched: ECONNREFUSED; JWTs signed by its keys are refused until it is fetched$/);
      const refused = await me(s, await token(k));
      assert.equal(refused.status, 401);
      assert.match(refused.body.message, /could not be fetched: ECONNREFUSED; JWTs signed by its keys are refused until it is fetched \(retried with back-off\)/);

      jwks = await new JwksServer().start(port);
      jwks.keys = [jwk(k)];
      // One token, asked about again and again (a refused token counts once against the address).
      const jwt = await token(k);
      const deadline = Date.now() + 20_000;
      let status = 0;
      while (Date.now() < deadline && (status = (await me(s, jwt)).status) !== 200) await new Promise((r) => setTimeout(r, 200));
      assert.equal(status, 200, 'accepted once a retry fetched the set');
      assert.ok(jwks.requests >= 1);
    } finally {
      await s.stop();
      await jwks?.stop();
    }
  });

  it('keeps the keys it has when a fetch fails (too large, not JSON, HTTP 500, no usable key), and the reload answer says why', async () => {
    const k = signer('RS256', 'kept-1');
    const jwks = await new JwksServer().start();
    jwks.keys = [jwk(k)];
    const s = await startServer({ jwtJwksUrl: jwks.url });
    try {
      const admin = await login(s.url);
      const reload = () => api<{ jwks: { ok: boolean; reason: string; keys: number } }>(s.url, 'POST', '/api/admin/reload', { token: admin });
      const cases: [string, (res: import('node:http').ServerResponse) => void, RegExp][] = [
        ['over 1 MiB', (res) => res.end(JSON.stringify({ keys: [], pad: 'x'.repeat(1_100_000) })), /over the 1048576-byte limit for a key set/],
        ['streamed over 1 MiB', (res) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          for (let i = 0; i < 40; i++) res.write('x'.repeat(32_768));
          res.end();
        }, /over the 1048576-byte limit for a key set/],
        ['not JSON', (res) => res.end('<html>'), /the answer is not JSON/],
        ['HTTP 500', (res) => void res.writeHead(500).end(), /HTTP 500/],
        ['no usable key', (res) => res.end(JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' }, { ...jwk(signer('ES256', 'p384')), crv: 'P-384' }, { ...jwk(k), use: 'enc', kid: 'enc-1' }, { ...jwk(k), alg: 'PS256', kid: 'ps-1' }] })),
          /holds no key Herald can use .*kid hmac: symmetric keys \(kty "oct"\) are never taken from a key set; kid p384: EC curve P-384 is not accepted \(ES256 needs P-256\); kid enc-1: use is "enc", not "sig"; kid ps-1: alg "PS256" is not accepted for a key of kty RSA/],
      ];
      for (const [what, answer, why] of cases) {
        jwks.answer = answer;
        const r = await reload();
        assert.equal(r.status, 422, what);
        assert.equal(r.body.data.jwks.ok, false, what);
        assert.equal(r.body.data.jwks.keys, 1, `${what}: the key fetched before stays`);
        assert.match(r.body.data.jwks.reason, why, what);
        assert.equal((await me(s, await token(k))).status, 200, `${what}: its tokens still work`);
      }
    } finally {
      await s.stop();
      await jwks.stop();
    }
  });
});

describe('JWT keys: jwtPublicKey of every kind, and configuration errors', () => {
  it('takes an EC P-256 or Ed25519 public key for jwtPublicKey, and refuses tokens of another algorithm', async () => {
    for (const k of [signer('ES256', 'pem'), signer('EdDSA', 'pem')]) {
      const s = await startServer({ jwtPublicKey: k.publicKey.export({ type: 'spki', format: 'pem' }).toString() });
      try {
        assert.equal((await me(s, await token(k, {}, { kid: undefined }))).status, 200, k.alg);
        const other = k.alg === 'ES256' ? signer('EdDSA', 'x') : signer('ES256', 'x');
        assert.match((await me(s, await token(other))).body.message, new RegExp(`JWT algorithm ${other.alg} does not fit jwtPublicKey, an ${k.alg} key`));
      } finally {
        await s.stop();
      }
    }
  });

  it('stops start-up with a ConfigError for a key or URL it cannot use', async () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await assert.rejects(startServer({ jwtPublicKey: p384 }), (err: Error) => err instanceof ConfigError && /jwtPublicKey: an EC key on curve secp384r1 is not accepted \(ES256 needs P-256\)/.test(err.message));
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await assert.rejects(startServer({ jwtPublicKey: short }), (err: Error) => err instanceof ConfigError && /an RSA key of 1024 bits is too short/.test(err.message));
    await assert.rejects(startServer({ jwtPublicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' }), (err: Error) => err instanceof ConfigError && /jwtPublicKey is not a PEM public key/.test(err.message));
    await assert.rejects(startServer({ jwtJwksUrl: 'ftp://127.0.0.1/jwks.json' }), (err: Error) => err instanceof ConfigError && /jwtJwksUrl must be an http:\/\/ or https:\/\/ URL \(got "ftp:\/\/127\.0\.0\.1\/jwks\.json"\)/.test(err.message));
  });

  it('check-config names the JWKS URL without fetching it, and refuses one that is not http(s)', async () => {
    const jwks = await new JwksServer().start();
    try {
      const ok = await runCommand(['check-config', '--host', '127.0.0.1', '--data-dir', '/tmp/herald-jwks-check-none', '--jwt-jwks-url', jwks.url]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, new RegExp(`^jwtJwksUrl +"${jwks.url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" +flag --jwt-jwks-url$`, 'm'));
      assert.match(ok.stdout, /configuration is valid \(PostgreSQL, Redis and the JWKS at http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json were not contacted\)/);
      assert.equal(jwks.requests, 0);
      const bad = await runCommand(['check-config', '--host', '127.0.0.1', '--data-dir', '/tmp/herald-jwks-check-none', '--jwt-jwks-url', 'jwks.json']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^herald: jwtJwksUrl must be an http:\/\/ or https:\/\/ URL \(got "jwks\.json"\)$/m);
    } finally {
      await jwks.stop();
    }
  });

  it('serve: a jwtJwksUrl that is not a URL is one line and exit 2', async () => {
    const dir = tempDir();
    try {
      const r = await runCommand(['serve', '--host', '127.0.0.1', '--http-port', '0', '--stomp-port', '0', '--mqtt-port', '0', '--data-dir', dir, '--jwt-jwks-url', 'not a url']);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, 'herald: jwtJwksUrl must be an http:// or https:// URL (got "not a url")\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

