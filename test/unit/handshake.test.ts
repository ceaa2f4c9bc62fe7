/** The handshake helpers every front end shares: where a token is read from, and how a refused one is answered. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthError } from '../../src/core/auth.js';
import type { IncomingMessage } from 'node:http';
import { UNNAMED_DEVICE, deviceOf, describeUserAgent, tokenFrom, upgradeRefusalFor } from '../../src/transports/handshake.js';

describe('tokenFrom', () => {
  it('reads X-Auth-Token, then a Bearer Authorization, then ?__token', () => {
    const q = new URLSearchParams('__token=q');
    assert.equal(tokenFrom({ 'x-auth-token': ' h ', authorization: 'Bearer b' }, q), 'h');
    assert.equal(tokenFrom({ authorization: 'bearer b' }, q), 'b');
    assert.equal(tokenFrom({ authorization: 'Basic xyz' }, q), 'q');
    assert.equal(tokenFrom({}, new URLSearchParams()), undefined);
  });
});

describe('upgradeRefusalFor', () => {
  it('answers a disabled user with 403, too many failures with 429, any other refusal with 401', () => {
    assert.equal(upgradeRefusalFor(new AuthError('user_disabled', 'user "a" is disabled')).status, 403);
    assert.equal(upgradeRefusalFor(new AuthError('rate_limited', 'too many failed logins', 30)).status, 429);
    const invalid = upgradeRefusalFor(new AuthError('invalid_token', 'token is not valid'));
    assert.equal(invalid.status, 401);
    assert.equal(invalid.message, 'token is not valid');
  });

  it('tells the holder of an expired token to log in again', () => {
    const r = upgradeRefusalFor(new AuthError('token_expired', 'token expired at 10:00'));
    assert.equal(r.status, 401);
    assert.equal(r.message, 'token expired; log in again');
  });
});

describe('deviceOf', () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
  it('takes ?device= as given, else a short name from the User-Agent, else says what was missing', () => {
    assert.equal(deviceOf(req({ 'user-agent': 'Mozilla/5.0' }), new URL('http://x/stomp?device=kiosk-7')), 'kiosk-7');
    assert.equal(deviceOf(req({}), new URL('http://x/stomp')), UNNAMED_DEVICE);
    assert.equal(UNNAMED_DEVICE, 'unnamed (no ?device= or User-Agent)');
  });
  it('names browsers by name, major version and system, and other programs by their first product', () => {
    const cases: [string, string][] = [
      ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', 'Chrome 131 on Linux'],
      ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.85 Safari/537.36', 'Headless Chrome 131 on Linux'],
      ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0.2210.91', 'Edge 120 on Windows'],
      ['Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:121.0) Gecko/20100101 Firefox/121.0', 'Firefox 121 on macOS'],
      ['Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1', 'Safari 17 on iOS'],
      ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36', 'Chrome 120 on Android'],
      ['okhttp/4.12.0', 'okhttp/4.12.0'],
      ['Python/3.11 websockets/12.0', 'Python/3.11'],
    ];
    for (const [ua, name] of cases) assert.equal(describeUserAgent(ua), name, ua);
  });
});
