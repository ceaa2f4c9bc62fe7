/**
 * STOMP front end: WebSocket endpoints `/v1/ws` (seeds 000/001, token in
 * `__token`) and `/stomp` (seed 003, token in `__token` or CONNECT
 * login/passcode), and raw TCP on `stompPort`.
 */
import type { Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import type { HeraldContext } from '../../context.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { tokenFrom } from '../../http/app.js';
import { UpgradeRefusal, type Admission } from '../../transports/listeners.js';
import { rawSocket, wsFrame, writeFrame } from '../../transports/ws-frame.js';
import { writeBatched } from '../../transports/write-batch.js';
import { StompConnection, type StompTransport } from './connection.js';

const SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'] as const;

function wsTransport(ws: WebSocket): StompTransport {
  const socket = rawSocket(ws);
  return {
    framing: 'ws',
    prepare: wsFrame,
    write: (frame) => writeFrame(ws, frame),
    buffered: () => socket.writableLength,
    close(code, reason) {
      ws.close(code, reason.slice(0, 120));
      setTimeout(() => ws.terminate(), 2000).unref();
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
}

function tcpTransport(socket: Socket): StompTransport {
  return {
    framing: 'tcp',
    prepare: (frame) => frame,
    write: (frame) => writeBatched(socket, frame),
    buffered: () => socket.writableLength,
    close() {
      socket.end();
      setTimeout(() => socket.destroy(), 2000).unref();
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
  };
}

export function deviceOf(req: IncomingMessage, url: URL): string {
  return (url.searchParams.get('device') ?? req.headers['user-agent'] ?? 'unknown').slice(0, 200);
}

export function clientAddress(ctx: HeraldContext, req: IncomingMessage): string {
  if (ctx.config.trustProxy) {
    const fwd = req.headers['x-forwarded-for'];
    if (typeof fwd === 'string' && fwd) return fwd.split(',')[0]!.trim();
  }
  return req.socket.remoteAddress ?? 'unknown';
}

/** Authenticates the handshake token; a missing or dead one is refused with 401 when `required`. */
async function handshakeToken(ctx: HeraldContext, req: IncomingMessage, url: URL, required: boolean): Promise<Principal | undefined> {
  const token = tokenFrom(req.headers, url.searchParams);
  if (!token) {
    if (required) throw new UpgradeRefusal(401, 'token is missing: connect to this endpoint with ?__token=<authToken from POST /v1/login>');
    return undefined;
  }
  try {
    return await ctx.auth.authenticate(token, { renew: true });
  } catch (err) {
    if (err instanceof AuthError) {
      ctx.metrics.protocolErrors.inc({ protocol: 'stomp-ws', reason: 'auth' });
      throw new UpgradeRefusal(err.code === 'user_disabled' ? 403 : 401, err.code === 'token_expired' ? 'token expired; log in again' : err.message);
    }
    throw err;
  }
}

export function registerStomp(ctx: HeraldContext): void {
  const { config, listeners } = ctx;
  const maxPayload = config.stompMaxHeaderBytes + config.maxBodyBytes + 1024;

  const onWebSocket = (ws: WebSocket, req: IncomingMessage, accepted: { principal: Principal | undefined; device: string }, admission: Admission): void => {
    const conn = new StompConnection(ctx, wsTransport(ws), 'stomp-ws', clientAddress(ctx, req), accepted.device, accepted.principal, admission);
    ws.on('message', (data: Buffer) => conn.receive(data));
    ws.on('close', () => conn.onTransportClosed());
    ws.on('error', () => conn.onTransportClosed());
  };

  for (const [path, required] of [
    ['/v1/ws', true],
    ['/stomp', false],
  ] as const) {
    listeners.addWebSocketRoute({
      name: `stomp ${path}`,
      path,
      protocols: SUBPROTOCOLS,
      maxPayload,
      accept: async (req, url) => ({ principal: await handshakeToken(ctx, req, url, required), device: deviceOf(req, url) }),
      onConnection: onWebSocket,
    });
  }

  listeners.addTcpListener({
    name: 'stomp',
    port: config.stompPort,
    onConnection(socket, admission) {
      const conn = new StompConnection(ctx, tcpTransport(socket), 'stomp-tcp', socket.remoteAddress ?? 'unknown', 'tcp', undefined, admission);
      socket.on('data', (data: Buffer) => conn.receive(data));
      socket.on('close', () => conn.onTransportClosed());
      socket.on('error', () => conn.onTransportClosed());
    },
  });
}
