/**
 * The one small interface protocols use to reach the network:
 * WebSocket paths on the HTTP port, and TCP listeners on their own ports.
 * A protocol module registers here in its `register` function; the server
 * binds everything at start and closes it at shutdown.
 *
 * Each listener binds its own address (`stompHost`, …; empty: `host`),
 * holds at most its own number of connections (listener-slots.ts), and the
 * STOMP and MQTT TCP listeners may sit behind the PROXY protocol
 * (proxy-accept.ts). With `adminPort` set, a separate plain HTTP listener
 * named `admin` serves the same app and WebSocket paths; which routes only
 * it answers is http/exposure.ts's business (`servedByAdmin`).
 */
import { PORT_OFF } from '../config.js';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../log.js';
import { AdmissionGate, ungated, type Admission, type AdmissionLimits, type RefusalKind } from './admission.js';
import { clientAddress } from './client-address.js';
import { ListenerSlots } from './listener-slots.js';
import { meteredWebSocket } from './metered-ws.js';
import type { ProxyProtocol } from './proxy-accept.js';
import type { TlsFiles } from './tls.js';
import { rawSocket } from './ws-frame.js';
import { watchMessageSize } from './ws-oversize.js';
import { holdWrites } from './write-batch.js';

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
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL, slots: ListenerSlots | undefined): void;
  close(): void;
}

/** One TCP listener: its name, port, bind address (empty: `host`) and most connections at once (0 = no limit). */
export interface TcpListenerPort {
  name: string;
  port: number;
  host?: string;
  maxConnections?: number;
}

export interface TcpListenerSpec extends TcpListenerPort {
  /** The same protocol over TLS (on when a certificate is configured). */
  tls?: TcpListenerPort;
  /**
   * `admission`: as for WebSocket routes; its `remoteAddress` is the
   * client's (the PROXY header's source behind a proxy), and `listenerFull`
   * is set when the listener was full.
   */
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

/** What the listeners are configured with (the server passes its config). */
export interface ListenerLimits extends AdmissionLimits {
  wsMessagesPerSecond: number;
  trustProxy: boolean;
  /** WebSocket sessions the HTTP and HTTPS listeners hold at once (0 = no limit). */
  httpMaxConnections: number;
  httpsMaxConnections: number;
}

/** The HTTP servers that route upgrades here: `http` and `https` hold at most their cap of WebSocket sessions; `admin` has none. */
export type HttpListenerName = 'http' | 'https' | 'admin';

export class NetworkListeners implements Listeners {
  private readonly routes: ErasedRoute[] = [];
  private readonly tcpSpecs: TcpListenerSpec[] = [];
  private readonly tcpServers: Server[] = [];
  private readonly tcpSockets = new Set<Socket>();
  private readonly httpServers: HttpServer[] = [];
  /** Connections the admin listener accepted (its requests may reach the admin routes). */
  private readonly adminSockets = new WeakSet<object>();
  private readonly webSocketSlots: Record<HttpListenerName, ListenerSlots | undefined>;
  /** Every capped listener's slots, by listener name (the console's node health). */
  private readonly slotsByName = new Map<string, ListenerSlots>();
  private draining = false;
  private readonly gate: AdmissionGate;

  constructor(
    private readonly log: Logger,
    private readonly limits: ListenerLimits,
    onRefused?: (kind: RefusalKind, reason: string) => void,
    /** The PROXY protocol on the STOMP and MQTT TCP listeners, when `proxyProtocol` is on. */
    private readonly proxy?: ProxyProtocol,
  ) {
    this.gate = new AdmissionGate(limits);
    this.gate.onRefused = onRefused;
    this.webSocketSlots = {
      http: new ListenerSlots('http', limits.httpMaxConnections),
      https: new ListenerSlots('https', limits.httpsMaxConnections),
      admin: undefined,
    };
    for (const slots of [this.webSocketSlots.http!, this.webSocketSlots.https!]) this.slotsByName.set(slots.listener, slots);
  }

  /** Connections each listener holds now (HTTP, HTTPS: WebSocket sessions) and its cap (0: none). */
  occupancy(): Map<string, { connections: number; max: number }> {
    return new Map([...this.slotsByName].map(([name, s]) => [name, { connections: s.count, max: s.max }]));
  }

  /** Whether this connection came in on the admin listener (`adminPort`). */
  servedByAdmin(socket: object): boolean {
    return this.adminSockets.has(socket);
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
      WebSocket: meteredWebSocket(rate),
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
      handle: (req, socket, head, url, slots) => {
        route.accept(req, url).then(
          (accepted) => {
            if (socket.destroyed) return;
            wss.handleUpgrade(req, socket, head, (ws) => this.opened(route, ws, req, socket as Socket, accepted, slots, maxPayload));
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

  /** A WebSocket session opened; apart, so the closures it leaves hold only what they use, not the upgrade request. */
  private opened<A>(route: WebSocketRoute<A>, ws: WebSocket, req: IncomingMessage, socket: Socket, accepted: A, slots: ListenerSlots | undefined, maxPayload: number): void {
    const address = clientAddress(req, this.limits.trustProxy);
    const admission = this.gate.upgraded(socket, address) ?? ungated(address);
    // A session holds a slot of its listener from its upgrade until it closes; past the cap, its protocol refuses it.
    if (slots?.take()) ws.on('close', () => slots.release());
    else if (slots) admission.listenerFull = slots.full;
    route.onConnection(ws, req, accepted, admission);
    if (route.onOversize) watchMessageSize(rawSocket(ws), maxPayload, (bytes) => route.onOversize?.(ws, bytes, maxPayload), holdWrites);
  }

  /** The WebSocket paths registered so far. */
  webSocketPaths(): WebSocketPath[] {
    return this.routes.map(({ name, path, prefix, protocols, doc }) => ({ name, path, prefix, protocols, doc }));
  }

  addTcpListener(spec: TcpListenerSpec): void {
    this.tcpSpecs.push(spec);
  }

  /** Routes HTTP upgrade requests on the `listener` HTTP server to the registered WebSocket paths. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, listener: HttpListenerName): void {
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
    route.handle(req, socket, head, url, this.webSocketSlots[listener]);
  }

  /** Binds every TCP listener, and their TLS twins when `tls` is given, each on its host or `defaultHost`; resolves with the bound addresses. */
  async startTcp(defaultHost: string, tls?: TlsFiles): Promise<BoundAddress[]> {
    const bound: BoundAddress[] = [];
    for (const spec of this.tcpSpecs) {
      if (spec.port !== PORT_OFF) bound.push(await this.bindTcp(spec, spec, defaultHost, undefined));
      if (tls && spec.tls && spec.tls.port !== PORT_OFF) bound.push(await this.bindTcp(spec, spec.tls, defaultHost, tls));
    }
    return bound;
  }

  /**
   * One TCP listener (over TLS when `tls` is given). A connection is
   * admitted (the per-address and pre-authentication limits, under the
   * client's address), takes a slot of the listener or is marked full, and
   * goes to the protocol. Behind the PROXY protocol, the header is read
   * first, from trusted peers only; on TLS, before the handshake.
   */
  private async bindTcp(spec: TcpListenerSpec, listener: TcpListenerPort, defaultHost: string, tls: TlsFiles | undefined): Promise<BoundAddress> {
    const slots = new ListenerSlots(listener.name, listener.maxConnections ?? 0);
    this.slotsByName.set(listener.name, slots);
    const accept = (socket: Socket, address: string): void => {
      if (this.draining) return void socket.destroy();
      const admission = this.gate.admit(socket, address, true);
      if (!admission) return void socket.destroy();
      const slotTaken = slots.take();
      if (!slotTaken) admission.listenerFull = slots.full;
      this.tcpSockets.add(socket); // one close listener for both (`once` adds a wrapper per socket)
      socket.on('close', () => {
        if (slotTaken) slots.release();
        this.tcpSockets.delete(socket);
      });
      spec.onConnection(socket, admission);
    };
    /** Behind the PROXY protocol on TLS: the client address of each raw connection (by its peer address and port) until its handshake ends. */
    const proxied = new Map<string, string>();
    const peer = (socket: Socket): string => `${socket.remoteAddress}|${socket.remotePort}`;
    let secure: Server | undefined;
    if (tls) {
      const tlsServer = createTlsServer(tls.options(true), (socket: TLSSocket) => {
        socket.setNoDelay(true);
        const address = proxied.get(peer(socket));
        proxied.delete(peer(socket));
        accept(socket, address ?? socket.remoteAddress ?? 'unknown');
      });
      // A failed handshake (no or a bad client certificate, a wrong CA, an old TLS version) is the client's business.
      tlsServer.on('tlsClientError', (err) => this.log.debug({ err: err.message, listener: listener.name }, 'TLS handshake refused'));
      tls.track(tlsServer, true);
      secure = tlsServer;
    }
    const proxy = this.proxy;
    if (!proxy) return this.bind(secure ?? createServer({ noDelay: true }, (socket) => accept(socket, socket.remoteAddress ?? 'unknown')), listener.name, listener.host || defaultHost, listener.port);

    const server = createServer({ noDelay: true }, (raw) => {
      if (this.draining) return void raw.destroy();
      if (!proxy.trusts(raw.remoteAddress)) {
        this.gate.refused('proxy_untrusted', `${listener.name}: ${raw.remoteAddress ?? 'an unknown address'} is not in trustedProxies, and proxyProtocol is on`);
        return void raw.destroy();
      }
      this.track(raw);
      proxy.read(raw, (outcome) => {
        if (!outcome.ok) {
          if (!outcome.silent) this.gate.refused('proxy_header', `${listener.name}: ${outcome.reason}`);
          return void raw.destroy();
        }
        if (!secure) {
          accept(raw, outcome.address);
          return void raw.resume();
        }
        // The TLS listener does the handshake on the socket, starting with the bytes after the header.
        const key = peer(raw);
        proxied.set(key, outcome.address);
        raw.once('close', () => proxied.delete(key));
        secure.emit('connection', raw);
      });
    });
    // The TLS server never listens itself; closed with its listener, it leaves the certificate reloads.
    if (secure) server.once('close', () => secure.close());
    return this.bind(server, listener.name, listener.host || defaultHost, listener.port);
  }

  private track(socket: Socket): void {
    if (this.tcpSockets.has(socket)) return;
    this.tcpSockets.add(socket);
    socket.once('close', () => this.tcpSockets.delete(socket));
  }

  /**
   * The HTTP API and every WebSocket path over TLS: requests go to `handler`
   * (the HTTP app's router), upgrades to the WebSocket routes, as on the
   * plain HTTP port.
   */
  async startHttps(host: string, port: number, tls: TlsFiles, handler: (req: IncomingMessage, res: ServerResponse) => void, timeouts: { requestTimeout: number; headersTimeout: number }): Promise<BoundAddress> {
    const server = createHttpsServer({ ...tls.options(false), ...timeouts }, handler);
    server.on('secureConnection', (socket: TLSSocket) => this.admitHttp(socket));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head, 'https'));
    server.on('clientError', (_err, socket: Duplex) => socket.destroy());
    server.on('tlsClientError', (err) => this.log.debug({ err: err.message, listener: 'https' }, 'TLS handshake refused'));
    tls.track(server, false);
    this.httpServers.push(server);
    return this.bind(server, 'https', host, port);
  }

  /**
   * The admin listener (`adminPort`): plain HTTP, the same app (`handler`)
   * and WebSocket paths as the HTTP port, with no cap on its sessions; its
   * connections are known (`servedByAdmin`), so the admin routes can be
   * answered here only.
   */
  async startAdmin(host: string, port: number, handler: (req: IncomingMessage, res: ServerResponse) => void, timeouts: { requestTimeout: number; headersTimeout: number }): Promise<BoundAddress> {
    const server = createHttpServer({ ...timeouts }, handler);
    server.on('connection', (socket: Socket) => {
      this.adminSockets.add(socket);
      this.admitHttp(socket);
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head, 'admin'));
    server.on('clientError', (_err, socket: Duplex) => socket.destroy());
    this.httpServers.push(server);
    return this.bind(server, 'admin', host, port);
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
    for (const s of this.httpServers) s.closeAllConnections();
  }
}
