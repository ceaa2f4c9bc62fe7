/**
 * CONNECT (or STOMP): negotiate the version, authenticate (the handshake's
 * token, a token in login/passcode, or a user name and password), admit the
 * session, and start heart-beats.
 */
import { HERALD_VERSION } from '../../version.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { connectLogin } from '../../core/connect-login.js';
import type { HeaderList } from '../../core/message.js';
import { encodeFrame, header, HEARTBEAT, type StompFrame } from './codec.js';
import type { Version } from './message-frame.js';
import type { StompState } from './state.js';
import { IdleSweep } from '../../transports/idle-sweep.js';

const VERSIONS: readonly Version[] = ['1.2', '1.1', '1.0'];

export async function onConnect(c: StompState, frame: StompFrame): Promise<void> {
  const accept = (header(frame, 'accept-version') ?? '1.0').split(',').map((v) => v.trim());
  const version = VERSIONS.find((v) => accept.includes(v));
  if (!version) {
    c.sendRaw(
      encodeFrame('ERROR', [['version', '1.0,1.1,1.2'], ['content-type', 'text/plain'], ['message', 'unsupported STOMP version']], `this server speaks STOMP 1.0, 1.1 and 1.2; the client offered ${accept.join(',')}`, false),
    );
    c.shutdown(1002, 'unsupported version');
    return;
  }
  c.version = version;
  c.parser.escaping = version !== '1.0';

  // The listener was full when this connection arrived: it is told so, unauthenticated, and closed.
  const full = c.admission.listenerFull;
  if (full) {
    c.ctx.metrics.protocolErrors.inc({ protocol: c.protocol, reason: 'listener_full' });
    c.sendError(`listener ${full.listener} is full`, full.reason, header(frame, 'receipt'));
    c.shutdown(1013, 'listener full');
    return;
  }

  let principal = c.handshakePrincipal;
  if (!principal) {
    const login = header(frame, 'login');
    const passcode = header(frame, 'passcode');
    try {
      const attempt = { protocol: 'stomp' as const, ...c.origin, ...(login ? { username: login } : {}), ...(passcode ? { password: passcode } : {}), device: c.device, remoteAddress: c.remoteAddress };
      principal = await connectLogin(c.ctx.auth, attempt, (address) => ownLogin(c, login, passcode, address));
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      c.ctx.metrics.authFailed(c.protocol, login || passcode || c.certificate.kind !== 'none' ? err.code : 'no_credentials');
      const message = err.code === 'token_expired' ? 'token expired' : err.code === 'rate_limited' ? 'too many failed logins' : err.code === 'unavailable' ? 'authentication unavailable' : 'authentication failed';
      c.sendError(message, err.message, header(frame, 'receipt'));
      c.shutdown(err.code === 'token_expired' ? 4401 : 4403, message);
      return;
    }
  }
  if (c.closed) return;
  if (c.ctx.sessions.ofUser(principal.userId).size >= c.limits.maxConnectionsPerUser) {
    c.sendError('too many connections', `user "${principal.name}" already has ${c.limits.maxConnectionsPerUser} connections open (maxConnectionsPerUser)`, header(frame, 'receipt'));
    c.shutdown(1008, 'too many connections');
    return;
  }
  c.principal = principal;
  c.ctx.sessions.add(c);
  c.registered = true;
  c.admission.authenticated();

  // Heart-beats: cx,cy from the client; the server offers sx = sy = heartbeatMs.
  const [cx, cy] = (header(frame, 'heart-beat') ?? '0,0').split(',').map((n) => Number.parseInt(n, 10));
  const hb = c.limits.heartbeatMs;
  const sendEvery = version === '1.0' || !cy || !hb ? 0 : Math.max(hb, cy);
  const expectEvery = version === '1.0' || !cx || !hb ? 0 : Math.max(hb, cx);
  clearTimeout(c.readTimer);
  c.readTimer = undefined;
  startHeartbeats(c, sendEvery, expectEvery);

  const headers: HeaderList = [
    ['version', version],
    ['heart-beat', `${version === '1.0' ? 0 : hb},${version === '1.0' ? 0 : hb}`],
    ['server', 'Herald/' + HERALD_VERSION],
    ['session', c.id],
    ['user-name', principal.name],
  ];
  c.state = 'connected';
  c.sendRaw(encodeFrame('CONNECTED', headers, undefined, false));
  c.receipt(frame);
}

/** Herald's own credentials in CONNECT; AuthError when they do not hold (`address`: where a refused token counts). */
async function ownLogin(c: StompState, login: string | undefined, passcode: string | undefined, address: string | undefined): Promise<Principal> {
  if (c.certificate.kind === 'unusable') throw new AuthError('bad_credentials', c.certificate.reason);
  // The verified certificate names the user (tlsClientCertAsUser); login and passcode are not asked.
  if (c.certificate.kind === 'user') return c.ctx.auth.certificateUser(c.certificate.name);
  if (login && passcode) {
    // A token in passcode (any login), else a user name with its password. The token is tried
    // first: it is cheap, and a token must never count as a failed password login.
    try {
      return await c.ctx.auth.authenticate(passcode, { renew: c.renewOnUse });
    } catch (err) {
      if (!(err instanceof AuthError) || err.code !== 'invalid_token') throw err;
      const user = await c.ctx.auth.checkPassword(login, passcode, c.remoteAddress);
      return { userId: user.id, name: user.name, role: user.role, credential: { kind: 'password' } };
    }
  }
  if (login || passcode) {
    // A token on its own: a refused one counts against this address (tokenFailuresPerAddress).
    return c.ctx.auth.authenticate((login || passcode)!, { renew: c.renewOnUse, ...(address !== undefined ? { address } : {}) });
  }
  throw new AuthError('invalid_token', 'no credentials: pass a token as __token in the URL, or login/passcode in CONNECT');
}

/**
 * Heart-beats. The silence check, and the beats sent at intervals of two
 * sweep periods or more (stompjs's 10 s), are one shared sweep over every
 * connection (see IdleSweep) rather than two timers each; shorter send
 * intervals keep a timer of their own, for their precision. A beat goes out
 * once the connection has written nothing for the interval less one sweep
 * period, so the gap between beats never exceeds the interval.
 */
function startHeartbeats(c: StompState, sendEvery: number, expectEvery: number): void {
  if (sendEvery > 0 && sendEvery < 2 * HEARTBEAT_SWEEP_MS) {
    c.sendTimer = setInterval(() => {
      if (Date.now() - c.lastWrite >= sendEvery * 0.9) c.sendRaw(HEARTBEAT);
    }, sendEvery);
    c.sendTimer.unref();
  } else {
    c.sweptSendEvery = sendEvery;
  }
  c.expectEvery = expectEvery;
  if (c.sweptSendEvery > 0 || expectEvery > 0) heartbeatSweep.watch(c);
}

const HEARTBEAT_SWEEP_MS = 1000;

/** Whether `c` is still watched: false once it is closed or closing, or cut now for its silence. */
export function checkHeartbeats(c: StompState, now: number): boolean {
  if (c.closed || c.state === 'closing') return false;
  if (c.expectEvery > 0) {
    const grace = Math.max(2000, c.expectEvery / 2);
    const silent = now - c.lastRead;
    if (silent > c.expectEvery + grace) {
      c.ctx.metrics.protocolErrors.inc({ protocol: c.protocol, reason: 'heartbeat' });
      c.fail('heart-beat timeout', `nothing received for ${silent} ms; the negotiated heart-beat was ${c.expectEvery} ms`);
      return false;
    }
  }
  if (c.sweptSendEvery > 0 && now - c.lastWrite >= c.sweptSendEvery - HEARTBEAT_SWEEP_MS) c.sendRaw(HEARTBEAT);
  return true;
}

export const heartbeatSweep = new IdleSweep<StompState>(checkHeartbeats, (err, c) => c.ctx.log.error({ err, session: c.id }, 'STOMP heart-beat check failed'), HEARTBEAT_SWEEP_MS);
