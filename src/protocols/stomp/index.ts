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
import type { Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import type { HeraldContext } from '../../context.js';
import { AuthError, type Principal } from '../../core/auth.js';
import { clientAddress, deviceOf, tokenFrom } from '../../transports/handshake.js';
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

/**
 * Authenticates the handshake token; a missing or dead one is refused with 401 when `required`.
 * `renew`: whether opening the socket counts as use of the token (see the top of this file).
 */
async function handshakeToken(ctx: HeraldContext, req: IncomingMessage, url: URL, required: boolean, renew: boolean): Promise<Principal | undefined> {
  const token = tokenFrom(req.headers, url.searchParams);
  if (!token) {
    if (required) throw new UpgradeRefusal(401, 'token is missing: connect to this endpoint with ?__token=<authToken from POST /v1/login>');
    return undefined;
  }
  try {
    return await ctx.auth.authenticate(token, { renew, address: clientAddress(req, ctx.config.trustProxy) });
  } catch (err) {
    if (err instanceof AuthError) {
      ctx.metrics.protocolErrors.inc({ protocol: 'stomp-ws', reason: 'auth' });
      const status = err.code === 'user_disabled' ? 403 : err.code === 'rate_limited' ? 429 : 401;
      throw new UpgradeRefusal(status, err.code === 'token_expired' ? 'token expired; log in again' : err.message);
    }
    throw err;
  }
}

/**
 * Watches, at the socket, the WebSocket frames a client sends for a message
 * larger than `limit`. `ws` refuses such a message by closing with 1009
 * before any of it reaches the protocol, so the ERROR frame the client is
 * owed must be written first, from here (this listener runs before ws's).
 * Only frame headers are read (2 to 14 bytes a frame); payloads are skipped
 * by count, so the cost is linear and nothing is buffered.
 */
function watchMessageSize(socket: Socket, limit: number, onOversize: (bytes: number) => void): void {
  const head = Buffer.alloc(14);
  let have = 0;
  let need = 2;
  let skip = 0;
  /** Payload bytes of the data message being received, over its fragments. */
  let total = 0;
  const onData = (chunk: Buffer): void => {
    let i = 0;
    while (i < chunk.length) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
        continue;
      }
      head[have++] = chunk[i++]!;
      if (have === 2) {
        const len7 = head[1]! & 0x7f;
        need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (head[1]! & 0x80 ? 4 : 0);
      }
      if (have < 2 || have < need) continue;
      const len7 = head[1]! & 0x7f;
      const length = len7 === 126 ? head.readUInt16BE(2) : len7 === 127 ? head.readUInt32BE(2) * 2 ** 32 + head.readUInt32BE(6) : len7;
      const opcode = head[0]! & 0x0f;
      have = 0;
      need = 2;
      skip = length;
      if (opcode >= 0x08) continue; // control frames are not part of a message
      total += length;
      if (total > limit) {
        socket.off('data', onData);
        onOversize(total);
        return;
      }
      if (head[0]! & 0x80) total = 0; // FIN: the message is complete
    }
  };
  socket.prependListener('data', onData);
  socket.once('close', () => socket.off('data', onData));
}

export function registerStomp(ctx: HeraldContext): void {
  const { config, listeners } = ctx;
  const maxPayload = config.stompMaxHeaderBytes + config.maxBodyBytes + 1024;

  for (const [path, required, renew] of [
    ['/v1/ws', true, false],
    ['/stomp', false, true],
  ] as const) {
    listeners.addWebSocketRoute({
      name: `stomp ${path}`,
      path,
      protocols: SUBPROTOCOLS,
      maxPayload,
      accept: async (req, url) => ({ principal: await handshakeToken(ctx, req, url, required, renew), device: deviceOf(req, url) }),
      onConnection(ws: WebSocket, req: IncomingMessage, accepted: { principal: Principal | undefined; device: string }, admission: Admission): void {
        const conn = new StompConnection(ctx, wsTransport(ws), 'stomp-ws', clientAddress(req, ctx.config.trustProxy), accepted.device, accepted.principal, admission, renew);
        watchMessageSize(rawSocket(ws), maxPayload, (bytes) => conn.tooLarge(bytes, maxPayload));
        ws.on('message', (data: Buffer) => conn.receive(data));
        ws.on('close', () => conn.onTransportClosed());
        ws.on('error', () => conn.onTransportClosed());
      },
    });
  }

  listeners.addTcpListener({
    name: 'stomp',
    port: config.stompPort,
    onConnection(socket, admission) {
      const conn = new StompConnection(ctx, tcpTransport(socket), 'stomp-tcp', socket.remoteAddress ?? 'unknown', 'tcp', undefined, admission, true);
      socket.on('data', (data: Buffer) => conn.receive(data));
      socket.on('close', () => conn.onTransportClosed());
      socket.on('error', () => conn.onTransportClosed());
    },
  });
}
