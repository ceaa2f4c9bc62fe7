/** The handshake helpers every front end shares: where a token is read from, and how a refused one is answered. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthError } from '../../src/core/auth.js';
import { tokenFrom, upgradeRefusalFor } from '../../src/transports/handshake.js';

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
