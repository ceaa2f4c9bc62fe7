/**
 * The one small interface protocols use to reach the network:
 * WebSocket paths on the HTTP port, and TCP listeners on their own ports.
 * A protocol module registers here in its `register` function; the server
 * binds everything at start and closes it at shutdown.
 */
import { PORT_OFF } from '../config.js';
import { createServer, type Server, type Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../log.js';
import { AdmissionGate, ungated, type Admission, type AdmissionLimits, type RefusalKind } from './admission.js';
import type { TlsFiles } from './tls.js';
import { rawSocket } from './ws-frame.js';
import { watchMessageSize } from './ws-oversize.js';

export type { Admission } from './admission.js';

/** Thrown from `WebSocketRoute.accept` to answer the upgrade with an HTTP error instead. */
export class UpgradeRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * How a WebSocket path is described in the HTTP API's OpenAPI document
 * (/api/openapi.json), where it appears as a GET answered 101.
 */
export interface WebSocketDoc {
  /** One line: what is spoken there. */
  summary: string;
  /** How a client connects and authenticates, in a few sentences. */
  description: string;
  /**
   * Where the handshake takes its credential: the `__token` query
   * (`required` or `optional`), the path's last segment (`path`), or only
   * inside the protocol once connected (`protocol`).
   */
  token: 'required' | 'optional' | 'path' | 'protocol';
}

/** A registered WebSocket path, as the API description lists it. */
export interface WebSocketPath {
  name: string;
  path: string;
  prefix: boolean;
  protocols: readonly string[];
  doc: WebSocketDoc;
}

export interface WebSocketRoute<A> {
  /** Names the route in logs. */
  name: string;
  /** Its entry in the OpenAPI document. */
  doc: WebSocketDoc;
  /** Exact path (`/stomp`), or with `prefix: true` a path prefix (`/websocket/` matches `/websocket/abc`). */
  path: string;
  prefix?: boolean;
  /** Subprotocols spoken, in the server's order of preference. */
  protocols?: readonly string[];
  /** Largest WebSocket message accepted (bytes); larger closes with 1009. */
  maxPayload?: number;
  /**
   * A client began a message of `bytes` (so far), over `limit` (maxPayload).
   * Called before `ws` closes with 1009, so the protocol can first say why
   * in its own words. Routes without it get the bare 1009.
   */
  onOversize?(ws: WebSocket, bytes: number, limit: number): void;
  /** Checks the request before the upgrade (token, path); throw UpgradeRefusal to refuse. */
  accept(req: IncomingMessage, url: URL): Promise<A>;
  /** `admission`: call `authenticated()` once the session proved who it is; set `onLimit` to say why it is cut before. */
  onConnection(ws: WebSocket, req: IncomingMessage, accepted: A, admission: Admission): void;
}

interface ErasedRoute extends WebSocketPath {
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void;
  close(): void;
}

export interface TcpListenerSpec {
  name: string;
  port: number;
  /** The same protocol over TLS (on when a certificate is configured): its listener's name and port. */
  tls?: { name: string; port: number };
  /** `admission`: as for WebSocket routes. */
  onConnection(socket: Socket, admission: Admission): void;
}

export interface BoundAddress {
  name: string;
  host: string;
  port: number;
}

export interface Listeners {
  addWebSocketRoute<A>(route: WebSocketRoute<A>): void;
  addTcpListener(spec: TcpListenerSpec): void;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Answers an upgrade request with a plain HTTP error in the JSON envelope, then closes. */
export function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ code: status, message, data: null });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

export class NetworkListeners implements Listeners {
  private readonly routes: ErasedRoute[] = [];
  private readonly tcpSpecs: TcpListenerSpec[] = [];
  private readonly tcpServers: Server[] = [];
  private readonly tcpSockets = new Set<Socket>();
  private readonly httpsServers: HttpsServer[] = [];
  private draining = false;
  private readonly gate: AdmissionGate;

  constructor(
    private readonly log: Logger,
    private readonly limits: AdmissionLimits & { wsMessagesPerSecond: number; trustProxy: boolean },
    onRefused?: (kind: RefusalKind, reason: string) => void,
  ) {
    this.gate = new AdmissionGate(limits);
    this.gate.onRefused = onRefused;
  }

  /**
   * An HTTP connection was accepted: it counts against its address until it
   * closes or, upgraded to a WebSocket, its session authenticates. Refused
   * at once (429) when the address holds too many unauthenticated connections.
   */
  admitHttp(socket: Socket): void {
    const address = socket.remoteAddress ?? 'unknown';
    if (!this.gate.admit(socket, address, false, !this.limits.trustProxy)) {
      socket.on('error', () => socket.destroy());
      const body = '{"code":429,"message":"too many unauthenticated connections (from this address, or in all); try again shortly","data":null}';
      socket.end(
        'HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
  }

  addWebSocketRoute<A>(route: WebSocketRoute<A>): void {
    const preferred = route.protocols ?? [];
    const rate = this.limits.wsMessagesPerSecond;
    const maxPayload = route.maxPayload ?? 1024 * 1024;
    const wss = new WebSocketServer({
      noServer: true,
      ...(rate > 0 ? { WebSocket: meteredWebSocket(rate) } : {}),
      maxPayload,
      perMessageDeflate: false,
      handleProtocols: (offered) => preferred.find((p) => offered.has(p)) ?? false,
    });
    const log = this.log;
    this.routes.push({
      name: route.name,
      path: route.path,
      prefix: route.prefix ?? false,
      protocols: preferred,
      doc: route.doc,
      handle: (req, socket, head, url) => {
        route.accept(req, url).then(
          (accepted) => {
            if (socket.destroyed) return;
            wss.handleUpgrade(req, socket, head, (ws) => {
              const admission = this.gate.upgraded(socket as Socket) ?? ungated();
              route.onConnection(ws, req, accepted, admission);
              const onOversize = route.onOversize?.bind(route);
              if (onOversize) watchMessageSize(rawSocket(ws), maxPayload, (bytes) => onOversize(ws, bytes, maxPayload));
            });
          },
          (err: unknown) => {
            if (err instanceof UpgradeRefusal) {
              refuseUpgrade(socket, err.status, err.message);
            } else {
              log.error({ err, route: route.name }, 'websocket upgrade failed');
              refuseUpgrade(socket, 500, 'internal error during the WebSocket handshake');
            }
          },
        );
      },
      close: () => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
      },
    });
  }

  /** The WebSocket paths registered so far. */
  webSocketPaths(): WebSocketPath[] {
    return this.routes.map(({ name, path, prefix, protocols, doc }) => ({ name, path, prefix, protocols, doc }));
  }

  addTcpListener(spec: TcpListenerSpec): void {
    this.tcpSpecs.push(spec);
  }

  /** Routes HTTP upgrade requests on the HTTP server to the registered WebSocket paths. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    if (this.draining) return refuseUpgrade(socket, 503, 'server is shutting down; reconnect to another node');
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return refuseUpgrade(socket, 400, 'request URL is not valid');
    }
    const path = url.pathname;
    const route = this.routes.find((r) => (r.prefix ? path.startsWith(r.path) : path === r.path));
    if (!route) {
      const known = this.routes.map((r) => (r.prefix ? r.path + '…' : r.path)).join(', ');
      return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${path}; endpoints: ${known || 'none'}`);
    }
    route.handle(req, socket, head, url);
  }

  /** Binds every TCP listener, and their TLS twins when `tls` is given; resolves with the bound addresses. */
  async startTcp(host: string, tls?: TlsFiles): Promise<BoundAddress[]> {
    const bound: BoundAddress[] = [];
    for (const spec of this.tcpSpecs) {
      const accept = (socket: Socket): void => {
        if (this.draining) return void socket.destroy();
        const admission = this.gate.admit(socket, socket.remoteAddress ?? 'unknown', true);
        if (!admission) return void socket.destroy();
        this.tcpSockets.add(socket);
        socket.once('close', () => this.tcpSockets.delete(socket));
        spec.onConnection(socket, admission);
      };
      if (spec.port !== PORT_OFF) bound.push(await this.bind(createServer({ noDelay: true }, accept), spec.name, host, spec.port));
      if (tls && spec.tls && spec.tls.port !== PORT_OFF) {
        const server = createTlsServer(tls.options(true), (socket: TLSSocket) => (socket.setNoDelay(true), accept(socket)));
        // A failed handshake (no or a bad client certificate, a wrong CA, an old TLS version) is the client's business.
        server.on('tlsClientError', (err) => this.log.debug({ err: err.message, listener: spec.tls!.name }, 'TLS handshake refused'));
        tls.track(server, true);
        bound.push(await this.bind(server, spec.tls.name, host, spec.tls.port));
      }
    }
    return bound;
  }

  /**
   * The HTTP API and every WebSocket path over TLS: requests go to `handler`
   * (the HTTP app's router), upgrades to the WebSocket routes, as on the
   * plain HTTP port.
   */
  async startHttps(host: string, port: number, tls: TlsFiles, handler: (req: IncomingMessage, res: ServerResponse) => void, timeouts: { requestTimeout: number; headersTimeout: number }): Promise<BoundAddress> {
    const server = createHttpsServer({ ...tls.options(false), ...timeouts }, handler);
    server.on('secureConnection', (socket: TLSSocket) => this.admitHttp(socket));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head));
    server.on('clientError', (_err, socket: Duplex) => socket.destroy());
    server.on('tlsClientError', (err) => this.log.debug({ err: err.message, listener: 'https' }, 'TLS handshake refused'));
    tls.track(server, false);
    this.httpsServers.push(server);
    return this.bind(server, 'https', host, port);
  }

  private async bind(server: Server, name: string, host: string, port: number): Promise<BoundAddress> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err, listener: name }, 'listener error'));
    this.tcpServers.push(server);
    const addr = server.address();
    return addr && typeof addr === 'object' ? { name, host: addr.address, port: addr.port } : { name, host, port };
  }

  /** Stops accepting new connections (TCP and WebSocket upgrades). */
  stopAccepting(): void {
    this.draining = true;
    for (const s of this.tcpServers) s.close();
  }

  /** Drops whatever is still connected after sessions were told to go. */
  closeAll(): void {
    for (const r of this.routes) r.close();
    for (const s of this.tcpSockets) s.destroy();
    for (const s of this.httpsServers) s.closeAllConnections();
  }
}

/**
 * A WebSocket whose incoming messages are capped per second: past the cap,
 * further messages (those already read from the socket) wait in order and
 * the socket is not read until the second is over. ws reads a whole socket
 * chunk at once, so pausing alone would still let one chunk (thousands of
 * tiny messages) through; holding them here makes the cap exact, and the
 * pause bounds what is held to one chunk. It bounds what a flood of tiny
 * messages can cost before any parser sees them (each message has a fixed
 * cost whatever its size). The protocol's own pause/resume (publish rate,
 * inbound backlog) is honoured alongside.
 */
function meteredWebSocket(perSecond: number): typeof WebSocket {
  return class MeteredWebSocket extends WebSocket {
    private windowStart = 0;
    private count = 0;
    private waiting: unknown[][] | undefined;
    private pausedByApp = false;
    private pausedByCap = false;

    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event !== 'message') return super.emit(event, ...args);
      if (this.waiting) {
        this.waiting.push(args);
        return true;
      }
      const now = Date.now();
      if (now - this.windowStart >= 1000) {
        this.windowStart = now;
        this.count = 0;
      }
      if (++this.count <= perSecond) return super.emit('message', ...args);
      this.waiting = [args];
      this.pausedByCap = true;
      super.pause();
      setTimeout(() => this.release(), 1000 - (now - this.windowStart)).unref();
      return true;
    }

    private release(): void {
      const held = this.waiting ?? [];
      this.waiting = undefined;
      this.windowStart = Date.now();
      this.count = 0;
      if (this.readyState !== WebSocket.OPEN) return;
      // Over the cap again part-way: the rest joins the new wait, in order.
      for (const args of held) this.emit('message', ...args);
      if (this.waiting) return;
      this.pausedByCap = false;
      if (!this.pausedByApp) super.resume();
    }

    override pause(): void {
      this.pausedByApp = true;
      super.pause();
    }

    override resume(): void {
      this.pausedByApp = false;
      if (!this.pausedByCap) super.resume();
    }
  };
}
