/** JSON WebSocket front end at `/websocket/{token}` (the message-center clients). */
import type { HeraldContext } from '../../context.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { UpgradeRefusal } from '../../transports/listeners.js';
import { clientAddress, deviceOf, upgradeRefusalFor } from '../../transports/handshake.js';
import { JsonConnection } from './connection.js';
import { connectLogin } from '../../core/connect-login.js';
import { originOf } from '../../transports/tls.js';

/** `mailbox`: the user mailbox whose messages this protocol carries (the message service's). */
export function registerJsonWebSocket(ctx: HeraldContext, mailbox: string): void {
  ctx.listeners.addWebSocketRoute<{ principal: Principal; device: string }>({
    name: 'json /websocket',
    doc: {
      summary: 'The JSON WebSocket (message service clients)',
      description:
        'One JSON object per WebSocket message each way (events message, topic, ping, ok, error; actions ack, read, ping, subscribe, unsubscribe, publish). ' +
        'The token from POST /v1/login is the last path segment and is checked at the handshake; `?device=` names the device. See docs/json-websocket.md.',
      token: 'path',
    },
    path: '/websocket/',
    prefix: true,
    maxPayload: ctx.config.maxBodyBytes + 4096,
    async accept(req, url) {
      let token: string;
      try {
        token = decodeURIComponent(url.pathname.slice('/websocket/'.length));
      } catch {
        throw new UpgradeRefusal(400, 'the token in the path is not valid URL encoding');
      }
      if (!token || token.includes('/')) {
        ctx.metrics.authFailed('json-ws', 'no_credentials');
        throw new UpgradeRefusal(401, 'token is missing: connect to /websocket/{authToken from POST /v1/login}');
      }
      let principal: Principal;
      const remoteAddress = clientAddress(req, ctx.config.trustProxy);
      try {
        // The path without the token: the hook gets the token as the password.
        const attempt = { protocol: 'json-ws' as const, ...originOf(req.socket, '/websocket/'), password: token, device: deviceOf(req, url), remoteAddress };
        principal = await connectLogin(ctx.auth, attempt, (address) => ctx.auth.authenticate(token, { renew: true, ...(address !== undefined ? { address } : {}) }));
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
        ctx.metrics.authFailed('json-ws', err.code);
        throw upgradeRefusalFor(err);
      }
      if (ctx.sessions.ofUser(principal.userId).size >= ctx.config.maxConnectionsPerUser) {
        throw new UpgradeRefusal(429, `user "${principal.name}" already has ${ctx.config.maxConnectionsPerUser} connections open (maxConnectionsPerUser)`);
      }
      return { principal, device: deviceOf(req, url) };
    },
    onConnection(ws, _req, accepted, admission) {
      // The token in the path authenticated the session at the handshake.
      admission.authenticated();
      const full = admission.listenerFull;
      if (full) {
        // The listener was full: the session never starts. 1013 is "try again later"; a close reason holds at most 123 bytes.
        ctx.metrics.protocolErrors.inc({ protocol: 'json-ws', reason: 'listener_full' });
        ws.close(1013, full.reason.slice(0, 123));
        setTimeout(() => ws.terminate(), 2000).unref();
        return;
      }
      new JsonConnection(ctx, ws, accepted.principal, admission.remoteAddress, accepted.device, mailbox).start();
    },
  });
}
