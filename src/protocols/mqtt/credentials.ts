/**
 * Who a CONNECT is, tried in this order: a hosted app's user token as
 * password (device MQTT with app and user tokens); a Herald token or JWT as
 * password, with any user name; a user name and password; anonymous if
 * allowed. A refusal becomes the CONNACK code a client library understands.
 */
import type { IConnectPacket } from 'mqtt-packet';
import { AppTokenRefusal } from '../../apps/mqtt-apps.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { ConnectRefused, REFUSE } from './reason-codes.js';
import type { MqttClientState } from './state.js';

/** The CONNECT's principal; refuses (throws ConnectRefused) when the credentials do not hold. */
export async function authenticate(c: MqttClientState, p: IConnectPacket): Promise<Principal> {
  if (c.certificate.kind !== 'none') return certificateUser(c);
  const password = p.password?.toString('utf8');
  if (password) {
    try {
      const appUser = await c.shared.apps.checkUserToken(password, p.username, p.clientId);
      if (appUser) return appUser;
    } catch (err) {
      if (err instanceof AppTokenRefusal) throw new ConnectRefused(err.kind === 'bad' ? REFUSE.badCredentials : REFUSE.notAuthorized, err.message);
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
        if (err.code !== 'bad_credentials') throw new ConnectRefused(REFUSE.notAuthorized, err.message);
      }
    }
    throw new ConnectRefused(
      tokenRefusal.code === 'user_disabled' || tokenRefusal.code === 'rate_limited' ? REFUSE.notAuthorized : REFUSE.badCredentials,
      tokenRefusal.code === 'invalid_token' ? 'wrong user name, password or token' : tokenRefusal.message,
    );
  }
  if (c.ctx.config.allowAnonymous) {
    c.anonymous = true;
    return { userId: 'anonymous:' + p.clientId, name: 'anonymous', role: 'user', credential: { kind: 'anonymous' } };
  }
  throw new ConnectRefused(REFUSE.notAuthorized, 'credentials are required: user name and password, or a token as password');
}

/**
 * tlsClientCertAsUser: the verified certificate's CN is the user, as
 * mosquitto's use_identity_as_username; the user name and password of the
 * CONNECT are not looked at.
 */
async function certificateUser(c: MqttClientState): Promise<Principal> {
  const id = c.certificate;
  if (id.kind === 'unusable') throw new ConnectRefused(REFUSE.badCredentials, id.reason);
  if (id.kind !== 'user') throw new Error('no certificate identity');
  try {
    return await c.ctx.auth.certificateUser(id.name);
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    throw new ConnectRefused(err.code === 'user_disabled' ? REFUSE.notAuthorized : REFUSE.badCredentials, err.message);
  }
}
