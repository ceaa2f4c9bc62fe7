/**
 * STOMP front end: WebSocket endpoints `/v1/ws` (stomp.js 2.3 notification
 * pages, token in `__token`) and `/stomp` (the chat widget's @stomp/stompjs,
 * token in `__token` or CONNECT login/passcode), and raw TCP on `stompPort`.
 *
 * Token renewal differs by endpoint. On `/v1/ws` a login token lives by HTTP
 * calls only (the page's socket session dies with its HTTP session), so
 * neither the handshake nor any frame renews it. On `/stomp` and TCP the
 * connection is the client's use of the server: the handshake or CONNECT
 * renews the token, and so does every SEND (a chat visitor is not logged out
 * while chatting); heart-beats do not.
 */
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import type { HeraldContext } from '../../context.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { tcpTransport, webSocketTransport } from '../../transports/byte-transport.js';
import { clientAddress, deviceOf, tokenFrom, upgradeRefusalFor } from '../../transports/handshake.js';
import { UpgradeRefusal, type Admission, type WebSocketDoc } from '../../transports/listeners.js';
import { certificateIdentity, originOf } from '../../transports/tls.js';
import { connectLogin } from '../../core/connect-login.js';
import { StompConnection } from './connection.js';

const SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'] as const;

/**
 * Authenticates the handshake token; a missing or dead one is refused with 401 when `required`.
 * `renew`: whether opening the socket counts as use of the token (see the top of this file).
 */
async function handshakeToken(ctx: HeraldContext, req: IncomingMessage, url: URL, required: boolean, renew: boolean): Promise<Principal | undefined> {
  const token = tokenFrom(req.headers, url.searchParams);
  if (!token) {
    if (required) {
      ctx.metrics.authFailed('stomp-ws', 'no_credentials');
      throw new UpgradeRefusal(401, 'token is missing: connect to this endpoint with ?__token=<authToken from POST /v1/login>');
    }
    return undefined;
  }
  const remoteAddress = clientAddress(req, ctx.config.trustProxy);
  try {
    const attempt = { protocol: 'stomp' as const, ...originOf(req.socket, url.pathname), password: token, device: deviceOf(req, url), remoteAddress };
    return await connectLogin(ctx.auth, attempt, (address) => ctx.auth.authenticate(token, { renew, ...(address !== undefined ? { address } : {}) }));
  } catch (err) {
    if (err instanceof AuthError) {
      ctx.metrics.authFailed('stomp-ws', err.code);
      throw upgradeRefusalFor(err);
    }
    throw err;
  }
}

export function registerStomp(ctx: HeraldContext): void {
  const { config, listeners } = ctx;
  const maxPayload = config.stompMaxHeaderBytes + config.maxBodyBytes + 1024;
  const connections = new WeakMap<WebSocket, StompConnection>();

  const docs: Record<'/v1/ws' | '/stomp', WebSocketDoc> = {
    '/v1/ws': {
      summary: 'STOMP 1.0–1.2 over WebSocket, for token clients',
      description:
        'The media clients\' STOMP channel: the token from POST /v1/login (`?__token=`, or X-Auth-Token / Authorization where the client can set headers) ' +
        'is checked at the handshake and binds the session, which ends when the token dies. Subprotocols v12.stomp, v11.stomp, v10.stomp. See docs/stomp.md.',
      token: 'required',
    },
    '/stomp': {
      summary: 'STOMP 1.0–1.2 over WebSocket',
      description:
        'STOMP for browser clients: a token in `__token` is checked at the handshake; without one, the CONNECT frame\'s `login`/`passcode` ' +
        '(user name and password, or a token as passcode) authenticate. Subprotocols v12.stomp, v11.stomp, v10.stomp. See docs/stomp.md.',
      token: 'optional',
    },
  };
  for (const [path, required, renew] of [
    ['/v1/ws', true, false],
    ['/stomp', false, true],
  ] as const) {
    listeners.addWebSocketRoute({
      name: `stomp ${path}`,
      doc: docs[path],
      path,
      protocols: SUBPROTOCOLS,
      maxPayload,
      onOversize: (ws, bytes, limit) => connections.get(ws)?.tooLarge(bytes, limit),
      accept: async (req, url) => ({ principal: await handshakeToken(ctx, req, url, required, renew), device: deviceOf(req, url) }),
      onConnection(ws: WebSocket, req: IncomingMessage, accepted: { principal: Principal | undefined; device: string }, admission: Admission): void {
        const conn = new StompConnection(ctx, webSocketTransport(ws), 'stomp-ws', admission.remoteAddress, accepted.device, accepted.principal, admission, renew);
        if (ctx.auth.hook) conn.origin = originOf(req.socket, path);
        connections.set(ws, conn);
        ws.on('message', (data: Buffer) => conn.receive(data));
        ws.on('close', () => conn.onTransportClosed());
        ws.on('error', () => conn.onTransportClosed());
      },
    });
  }

  listeners.addTcpListener({
    name: 'stomp',
    port: config.stompPort,
    host: config.stompHost,
    maxConnections: config.stompMaxConnections,
    tls: { name: 'stomp-tls', port: config.stompTlsPort, host: config.stompTlsHost, maxConnections: config.stompTlsMaxConnections },
    onConnection(socket, admission) {
      const transport = tcpTransport(socket);
      const conn = new StompConnection(ctx, transport, 'stomp-tcp', admission.remoteAddress, 'tcp', undefined, admission, true);
      if (ctx.config.tlsClientCertAsUser) conn.certificate = certificateIdentity(socket);
      if (ctx.auth.hook) conn.origin = originOf(socket);
      transport.read((data) => conn.receive(data));
      socket.on('close', () => conn.onTransportClosed());
      socket.on('error', () => conn.onTransportClosed());
    },
  });
}
