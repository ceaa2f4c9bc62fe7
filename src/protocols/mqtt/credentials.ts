/**
 * Who a CONNECT is, tried in this order: a verified client certificate's CN
 * (tlsClientCertAsUser); a hosted app's user token as password (device MQTT
 * with app and user tokens); a Herald token or JWT as password, with any
 * user name; a user name and password; anonymous if allowed. With a connect
 * hook (authHookUrl), the application decides what Herald does not know
 * (see core/connect-login.ts). A refusal becomes the CONNACK code a client
 * library understands, counted in herald_auth_failures_total (not as a
 * protocol error).
 */
import type { IConnectPacket } from 'mqtt-packet';
import { AppTokenRefusal } from '../../apps/mqtt-apps.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { connectLogin } from '../../core/connect-login.js';
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
  try {
    return await connectLogin(
      c.ctx.auth,
      {
        protocol: 'mqtt',
        ...c.origin,
        ...(p.username ? { username: p.username } : {}),
        ...(password ? { password } : {}),
        clientId: p.clientId,
        remoteAddress: c.remoteAddress,
      },
      (address) => ownLogin(c, p, password, address),
    );
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    const refusal = err.code === 'unavailable' ? REFUSE.unavailable : err.code === 'user_disabled' || err.code === 'rate_limited' ? REFUSE.notAuthorized : REFUSE.badCredentials;
    throw refused(c, err.code, refusal, err.message);
  }
}

/** Herald's own credentials; AuthError when they do not hold (`address`: where a refused token counts). */
async function ownLogin(c: MqttClientState, p: IConnectPacket, password: string | undefined, address: string | undefined): Promise<Principal> {
  if (c.certificate.kind === 'unusable') throw new AuthError('bad_credentials', c.certificate.reason);
  // tlsClientCertAsUser: the verified certificate's CN is the user, as mosquitto's use_identity_as_username;
  // the user name and password of the CONNECT are not looked at.
  if (c.certificate.kind === 'user') return c.ctx.auth.certificateUser(c.certificate.name);
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
      return await c.ctx.auth.authenticate(password, p.username || address === undefined ? { renew: true } : { renew: true, address });
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      tokenRefusal = err;
    }
    if (p.username && tokenRefusal.code === 'invalid_token') {
      try {
        const user = await c.ctx.auth.checkPassword(p.username, password, c.remoteAddress);
        return { userId: user.id, name: user.name, role: user.role, credential: { kind: 'password' } };
      } catch (err) {
        if (!(err instanceof AuthError) || err.code !== 'bad_credentials') throw err;
      }
    }
    // Neither a token nor the password of that user.
    if (tokenRefusal.code === 'invalid_token') throw new AuthError('bad_credentials', 'wrong user name, password or token');
    throw tokenRefusal;
  }
  if (c.ctx.config.allowAnonymous) {
    c.anonymous = true;
    return { userId: 'anonymous:' + p.clientId, name: 'anonymous', role: 'user', credential: { kind: 'anonymous' } };
  }
  throw refused(c, 'no_credentials', REFUSE.notAuthorized, 'credentials are required: user name and password, or a token as password');
}
