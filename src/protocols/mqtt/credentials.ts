/**
 * Who a CONNECT is, tried in this order: a hosted app's user token as
 * password (device MQTT with app and user tokens); a Herald token or JWT as
 * password, with any user name; a user name and password; anonymous if
 * allowed. A refusal becomes the CONNACK code a client library understands,
 * counted in herald_auth_failures_total (not as a protocol error).
 */
import type { IConnectPacket } from 'mqtt-packet';
import { AppTokenRefusal } from '../../apps/mqtt-apps.js';
import { AuthError, type Principal } from '../../core/auth.js';
import type { AuthFailureReason } from '../../core/metrics.js';
import { ConnectRefused, REFUSE, type Refusal } from './reason-codes.js';
import type { MqttClientState } from './state.js';

/** A refused authentication, counted under `reason`. */
function refused(c: MqttClientState, reason: AuthFailureReason, refusal: Refusal, message: string): ConnectRefused {
  c.ctx.metrics.authFailed(c.protocol, reason);
  return new ConnectRefused(refusal, message, null);
}

/** The CONNECT's principal; refuses (throws ConnectRefused) when the credentials do not hold. */
export async function authenticate(c: MqttClientState, p: IConnectPacket): Promise<Principal> {
  const password = p.password?.toString('utf8');
  if (password) {
    try {
      const appUser = await c.shared.apps.checkUserToken(password, p.username, p.clientId);
      if (appUser) return appUser;
    } catch (err) {
      if (err instanceof AppTokenRefusal) throw refused(c, 'app_token', err.kind === 'bad' ? REFUSE.badCredentials : REFUSE.notAuthorized, err.message);
      throw err;
    }
    // A Herald token (or JWT) as password, with any user name: checked first because it is cheap,
    // and so that a token never counts as a failed password login. Without a user name the password
    // can only be a token: a refused one counts against the address (tokenFailuresPerAddress).
    let tokenRefusal: AuthError;
    try {
      return await c.ctx.auth.authenticate(password, p.username ? { renew: true } : { renew: true, address: c.remoteAddress });
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      tokenRefusal = err;
    }
    if (p.username && tokenRefusal.code === 'invalid_token') {
      try {
        const user = await c.ctx.auth.checkPassword(p.username, password, c.remoteAddress);
        return { userId: user.id, name: user.name, role: user.role, credential: { kind: 'password' } };
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
        if (err.code !== 'bad_credentials') throw refused(c, err.code, REFUSE.notAuthorized, err.message);
        // Neither a token nor the password of that user.
        throw refused(c, 'bad_credentials', REFUSE.badCredentials, 'wrong user name, password or token');
      }
    }
    throw refused(
      c,
      tokenRefusal.code,
      tokenRefusal.code === 'user_disabled' || tokenRefusal.code === 'rate_limited' ? REFUSE.notAuthorized : REFUSE.badCredentials,
      tokenRefusal.code === 'invalid_token' ? 'wrong user name, password or token' : tokenRefusal.message,
    );
  }
  if (c.ctx.config.allowAnonymous) {
    c.anonymous = true;
    return { userId: 'anonymous:' + p.clientId, name: 'anonymous', role: 'user', credential: { kind: 'anonymous' } };
  }
  throw refused(c, 'no_credentials', REFUSE.notAuthorized, 'credentials are required: user name and password, or a token as password');
}
