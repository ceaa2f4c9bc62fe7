/**
 * Wires Herald together: config → store → auth → sessions → HTTP and protocol
 * listeners; and takes it apart again on shutdown.
 */
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import { ConfigError, PORT_OFF, type Config } from './config.js';
import { TlsFiles } from './transports/tls.js';
import { MAILBOX, MessageService } from './apps/message-service.js';
import { registerTestEcho } from './apps/test-echo.js';
import { ThreadService } from './apps/threads.js';
import { Auth } from './core/auth.js';
import { Broker } from './core/broker.js';
import { Acl } from './core/acl.js';
import { AclHook } from './core/acl-hook.js';
import { Metrics, timedStore } from './core/metrics.js';
import { randomPassword } from './core/passwords.js';
import { SessionRegistry } from './core/session.js';
import { createHttpApp, type RouteContext } from './http/app.js';
import { registerHealthRoutes } from './http/health.js';
import { registerLoginRoutes } from './http/login.js';
import { registerMessageRoutes } from './http/messages.js';
import { registerPublishRoute } from './http/publish.js';
import { registerThreadRoutes } from './http/threads.js';
import { registerUserRoutes } from './http/users.js';
import { createLogger, type Logger } from './log.js';
import { registerJsonWebSocket } from './protocols/json-ws/index.js';
import { registerStomp } from './protocols/stomp/index.js';
import { registerMqtt, type MqttShared } from './protocols/mqtt/index.js';
import { MqttApps } from './apps/mqtt-apps.js';
import { registerAppRoutes } from './http/apps.js';
import { registerAdminRoutes } from './http/admin.js';
import { registerSessionRoutes } from './http/admin-sessions.js';
import { registerRetainedRoutes } from './http/admin-retained.js';
import { registerQueueRoutes } from './http/admin-queues.js';
import { registerNodeRoutes } from './http/admin-node.js';
import { registerTraceRoutes } from './http/admin-trace.js';
import { reloadNode, type ReloadReport } from './reload.js';
import { registerWebRoutes } from './http/web.js';
import { registerOpenApi, registerWebSocketPaths } from './http/openapi.js';
import { registerReloadRoute } from './http/reload.js';
import { AuditTrail } from './http/audit.js';
import { MetricHistory } from './core/history.js';
import { SqliteStore } from './store/sqlite/sqlite-store.js';
import { PostgresStore } from './store/postgres/postgres-store.js';
import { Cluster, defaultNodeId } from './bus/cluster.js';
import { RedisPresence } from './bus/redis-presence.js';
import { joinClusterAuth } from './core/auth-cluster.js';
import { joinClusterThreads } from './apps/thread-cluster.js';
import { joinClusterMqtt } from './protocols/mqtt/cluster.js';
import { redactUrl } from './bus/redis-bus.js';
import { LocalPresence, type Presence } from './core/presence.js';
import { DuplicateError, StoreUnavailableError, type Store } from './store/store.js';
import type { Socket } from 'node:net';
import { NetworkListeners, type BoundAddress } from './transports/listeners.js';
import { ProxyProtocol } from './transports/proxy-accept.js';
import { separateAdminRoutes } from './http/exposure.js';
import { Drainer } from './drain.js';
import { checkOpenFiles, listenerCaps } from './transports/open-files.js';
import { Webhooks } from './webhooks/index.js';
import { registerWebhookRoutes } from './http/webhooks.js';

export interface StartOptions {
  config: Config;
  clock?: Clock;
  log?: Logger;
  /** Where `listening …` lines and the first admin password go (stdout by default). */
  announce?: (line: string) => void;
}


/**
 * SQLite by default; PostgreSQL when databaseUrl is set. An unreachable
 * PostgreSQL is retried with back-off for databaseConnectSeconds, saying so
 * each time, before start-up gives up; one that answers but refuses (wrong
 * password, no such database) stops start-up at once.
 */
export async function openStore(config: Config, log: Logger): Promise<Store> {
  if (!config.databaseUrl) {
    return new SqliteStore({ dataDir: config.dataDir, synchronous: config.sqliteSynchronous as 'FULL' | 'NORMAL', maxSizeMb: config.sqliteMaxSizeMb });
  }
  if (!/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    throw new ConfigError(`databaseUrl must be a postgres:// or postgresql:// URL (got ${JSON.stringify(redactUrl(config.databaseUrl))})`);
  }
  const where = redactUrl(config.databaseUrl);
  const giveUpAt = Date.now() + config.databaseConnectSeconds * 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await PostgresStore.open({ connectionString: config.databaseUrl, poolSize: config.databasePoolSize });
    } catch (err) {
      const cause = err instanceof StoreUnavailableError && err.cause instanceof Error ? err.cause : (err as Error);
      const message = cause.message || String((cause as { code?: unknown }).code);
      if (!(err instanceof StoreUnavailableError)) throw new Error(`PostgreSQL at ${where} refused: ${message}`);
      const left = giveUpAt - Date.now();
      if (left <= 0) throw new Error(`PostgreSQL at ${where} is unreachable (gave up after databaseConnectSeconds=${config.databaseConnectSeconds}): ${message}`);
      log.error({ url: where, attempt, err: message }, 'PostgreSQL unreachable; retrying');
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, 5000, left)));
    }
  }
}

/**
 * The node's context as the server holds it: what protocols and routes get,
 * plus the concrete cluster engine (to stop it; tests read its bus).
 */
export type ServerContext = RouteContext & { readonly cluster: Cluster | undefined };

export class HeraldServer {
  private readonly drainer: Drainer;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly ctx: ServerContext,
    private readonly network: NetworkListeners,
    readonly threads: ThreadService,
    private readonly mqtt: MqttShared,
    readonly addresses: readonly BoundAddress[],
    private readonly tls: TlsFiles | undefined,
    private readonly webhooks: Webhooks | undefined,
  ) {
    this.drainer = new Drainer(
      { sessions: ctx.sessions, stopAccepting: () => network.stopAccepting(), log: ctx.log.child({ component: 'drain' }) },
      { readySeconds: ctx.config.drainReadySeconds, seconds: ctx.config.drainSeconds },
    );
  }

  /** From the first moment of a shutdown: `/readyz` answers 503. */
  get draining(): boolean {
    return this.drainer.draining;
  }

  /** Address of a listener by name (`http`, `stomp`, `mqtt`). */
  address(name: string): BoundAddress {
    const a = this.addresses.find((x) => x.name === name);
    if (!a) throw new Error(`no listener named ${name}`);
    return a;
  }

  get httpUrl(): string {
    const a = this.address('http');
    return `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  }

  static async start(options: StartOptions): Promise<HeraldServer> {
    const { config } = options;
    const clock = options.clock ?? systemClock;
    const log = options.log ?? createLogger(config);
    const announce = options.announce ?? ((line: string) => void process.stdout.write(line + '\n'));
    const startedAt = clock.now();

    const metrics = new Metrics();
    if (config.redisUrl && !config.databaseUrl) {
      // Nodes with a file each would share topics but not users, tokens, queues or stored messages.
      throw new ConfigError('redisUrl (cluster mode) needs databaseUrl too: every node of a cluster must use the same PostgreSQL database');
    }
    const nodeId = defaultNodeId(config.nodeName);
    const acl = Acl.load(config.aclFile, metrics.aclDenied);
    if (config.aclHookUrl) acl.hook = new AclHook({ url: config.aclHookUrl, timeoutMs: config.aclHookTimeoutMs, cacheSeconds: config.aclHookCacheSeconds, clock, log: log.child({ component: 'acl-hook' }) });
    // trustedProxies is read before anything is created: a bad entry, or none with proxyProtocol on, stops start-up.
    const proxy = ProxyProtocol.fromConfig(config);
    // TLS files are read before anything is created: a missing key stops start-up naming the key and the path.
    const tls = TlsFiles.open(config, log.child({ component: 'tls' }));
    const store = timedStore(await openStore(config, log), metrics);
    metrics.describeNode(store.kind, config.redisUrl ? 'cluster' : 'single');
    // This start is a new incarnation of the node: whatever an earlier one held is free now.
    let owner: string;
    try {
      owner = await store.beginIncarnation(nodeId, config.presenceTtlSeconds * 1000, !config.redisUrl);
    } catch (err) {
      await store.close();
      throw err;
    }
    let cluster: Cluster | undefined;
    if (config.redisUrl) {
      try {
        cluster = new Cluster({
          redisUrl: config.redisUrl,
          name: config.clusterName,
          nodeId,
          owner,
          ttlMs: config.presenceTtlSeconds * 1000,
          startedAt,
          log: log.child({ component: 'cluster' }),
          metrics,
        });
      } catch (err) {
        await store.close();
        throw new ConfigError((err as Error).message);
      }
    } else {
      // A single node owns everything: claims left by an earlier run are free again.
      await store.releaseDeadClaims([owner]);
    }
    const auth = new Auth(store, config, clock, log.child({ component: 'auth' }));
    try {
      await auth.start();
    } catch (err) {
      auth.stop();
      await cluster?.stop();
      await store.close();
      throw err;
    }
    const sessions = new SessionRegistry(auth, metrics);
    const presence: Presence = cluster
      ? new RedisPresence(cluster, sessions, config.presenceTtlSeconds * 1000, log.child({ component: 'cluster' }))
      : new LocalPresence(sessions, nodeId, startedAt);
    const netLog = log.child({ component: 'net' });
    const network = new NetworkListeners(
      netLog,
      config,
      (kind, reason) => {
        metrics.protocolErrors.inc({ protocol: 'any', reason: kind });
        netLog.debug({ reason }, 'connection refused before authentication');
      },
      proxy,
    );
    const broker = new Broker(store, log.child({ component: 'broker' }), {
      queueMemoryMessages: 10_000,
      parkedPerUser: 1000,
      maxRedeliveries: 10,
    }, owner);
    registerTestEcho(broker);
    const messages = new MessageService(store, broker, presence, config, clock, log.child({ component: 'messages' }));
    messages.start();
    const threads = new ThreadService(store, broker, config, clock, log.child({ component: 'threads' }));
    threads.start();
    const apps = new MqttApps(store, config, clock);
    if (cluster) {
      // Features that need the other nodes register their control messages; the cluster only routes them.
      joinClusterAuth(auth, cluster, {
        loginLimit: config.loginMaxAttempts,
        tokenFailureLimit: config.tokenFailuresPerAddress,
        loginWindowMs: config.loginWindowSeconds * 1000,
      });
      joinClusterThreads(threads, cluster);
      cluster.start({ store, broker, connections: () => sessions.size });
    }
    const webhooks = await Webhooks.start({ config, store, log, clock, metrics, sessions, broker, presence, writers: [messages, threads], nodeId, owner, cluster });
    const base = { config, log, clock, store, auth, sessions, metrics, acl, broker, messages, nodeId, presence, cluster };
    const http = createHttpApp(base);
    const audit = new AuditTrail(store, nodeId, clock, log.child({ component: 'audit' }));
    const history = new MetricHistory({ metrics, ...(cluster ? { busDropped: () => cluster.bus.dropped } : {}) }, config.historySampleSeconds * 1000);
    // With an admin port, the admin routes answer there only (before any route is added, so each is seen).
    if (config.adminPort !== PORT_OFF) separateAdminRoutes(http, (socket) => network.servedByAdmin(socket));
    const ctx: ServerContext = { ...base, http, listeners: network, audit, history };

    let server: HeraldServer | undefined;
    let mqtt: MqttShared | undefined;
    const addresses: BoundAddress[] = [];
    try {
      // First: it describes every route added after it (/api/openapi.json).
      await registerOpenApi(http);
      registerHealthRoutes(ctx, { draining: () => server?.draining ?? false, startedAt });
      registerLoginRoutes(ctx);
      registerUserRoutes(ctx);
      registerPublishRoute(ctx);
      registerMessageRoutes(ctx, messages);
      registerThreadRoutes(ctx, threads);
      registerAppRoutes(ctx, apps);
      registerWebRoutes(ctx);
      registerAdminRoutes(ctx, startedAt);
      registerSessionRoutes(ctx);
      registerQueueRoutes(ctx);
      registerTraceRoutes(ctx);
      registerNodeRoutes(ctx, { addresses, occupancy: () => network.occupancy(), startedAt, redis: cluster && (() => ({ connected: cluster!.connected, dropped: cluster!.bus.dropped })) });
      registerReloadRoute(ctx, tls);
      registerWebhookRoutes(ctx, webhooks);
      // Protocol front ends: each registers its routes and listeners, nothing else.
      registerStomp(ctx);
      registerJsonWebSocket(ctx, MAILBOX);
      mqtt = await registerMqtt(ctx, apps);
      registerRetainedRoutes(ctx, mqtt.retained);
      if (cluster) joinClusterMqtt(cluster, ctx, mqtt);
      registerWebSocketPaths(http, network.webSocketPaths());

      http.server.on('connection', (socket: Socket) => network.admitHttp(socket));
      http.server.on('upgrade', (req, socket, head) => network.handleUpgrade(req, socket, head, 'http'));
      if (config.httpPort === PORT_OFF) {
        await http.ready();
      } else {
        await http.listen({ host: config.host, port: config.httpPort });
        const a = http.server.address();
        if (a && typeof a === 'object') addresses.push({ name: 'http', host: a.address, port: a.port });
      }
      const requestTimeout = config.httpRequestTimeoutSeconds * 1000;
      const timeouts = { requestTimeout, headersTimeout: Math.min(10_000, requestTimeout) };
      if (tls && config.httpsPort !== PORT_OFF) {
        addresses.push(await network.startHttps(config.httpsHost || config.host, config.httpsPort, tls, (req, res) => http.routing(req, res), timeouts));
      }
      addresses.push(...(await network.startTcp(config.host, tls)));
      if (config.adminPort !== PORT_OFF) {
        addresses.push(await network.startAdmin(config.adminHost || config.host, config.adminPort, (req, res) => http.routing(req, res), timeouts));
      }
      // Only now, with every listener bound, is anything created that a person would see: a start that
      // fails on a port in use leaves no admin user behind (its password would have been printed for nothing).
      await ensureAdmin(store, auth, config, log, announce);
    } catch (err) {
      network.stopAccepting();
      await http.close();
      history.stop();
      audit.stop();
      auth.stop();
      messages.stop();
      threads.stop();
      mqtt?.stop();
      await webhooks?.stop();
      await cluster?.stop();
      await store.close();
      throw err;
    }
    history.start((err) => log.warn({ err }, 'sampling the overview history failed'));
    audit.start();
    checkOpenFiles(log, listenerCaps(config, addresses));
    for (const a of addresses) announce(`listening ${a.name} ${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`);
    log.info({ addresses, store: store.kind, node: nodeId, cluster: cluster ? config.clusterName : undefined }, 'herald started');
    server = new HeraldServer(ctx, network, threads, mqtt, addresses, tls, webhooks);
    return server;
  }

  /**
   * Hot reload (SIGHUP, POST /api/admin/reload): `aclFile` and the TLS files
   * are read again and the JWKS fetched again. Each part that fails keeps
   * what it had and says why (logged, and in the report); see reload.ts.
   */
  reload(): Promise<ReloadReport> {
    return reloadNode({ ...this.ctx, tls: this.tls });
  }

  /** Only the TLS part of `reload`: new handshakes use the files read again, open connections keep theirs. */
  reloadTls(): { ok: true } | { ok: false; reason: string } {
    return this.tls ? this.tls.reload() : { ok: false, reason: 'no TLS certificate is configured (tlsCertFile)' };
  }

  /**
   * Graceful shutdown (SIGTERM): the lame-duck drain (`/readyz` 503 for
   * drainReadySeconds while everything serves, then new connections refused
   * and every client told why, in batches over drainSeconds), then in-flight
   * HTTP requests, and persistent state flushed last. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const { log, sessions, http, auth, store } = this.ctx;
    log.info({ sessions: sessions.size, drainReadySeconds: this.ctx.config.drainReadySeconds, drainSeconds: this.ctx.config.drainSeconds }, 'shutting down');
    await this.drainer.run();
    // Give clients a moment to read the goodbye and close their side; then cut what is left.
    const deadline = Date.now() + Math.min(2000, this.ctx.config.shutdownTimeoutMs / 2);
    while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.network.closeAll();
    await http.close();
    auth.stop();
    this.ctx.history.stop();
    this.ctx.audit.stop();
    this.ctx.messages.stop();
    this.threads.stop();
    this.mqtt.stop();
    // Queue messages this node claimed but did not deliver go back for the other nodes (or the next start).
    await this.ctx.broker.releaseAll();
    await this.mqtt.sessions.flush();
    // After the sessions: their client.disconnected events are written before the last batch.
    await this.webhooks?.stop();
    await this.ctx.cluster?.stop();
    // Fenced at once: the sessions it held are free for the other nodes (or the next start) without waiting for its lease.
    await store.endIncarnation(this.ctx.broker.owner).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not end this incarnation in the store'));
    await store.close();
    log.info('stopped');
  }
}

/** First start with no users: create `admin` with the configured or a random password (printed once). */
async function ensureAdmin(
  store: Store,
  auth: Auth,
  config: Config,
  log: Logger,
  announce: (line: string) => void,
): Promise<void> {
  if ((await store.countUsers()) > 0) return;
  const password = config.adminPassword || randomPassword();
  try {
    await auth.createUser('admin', password, 'admin');
  } catch (err) {
    // Another node of the cluster, starting at the same moment, made it first.
    if (err instanceof DuplicateError) return;
    throw err;
  }
  if (config.adminPassword) {
    log.info('created user "admin" with the password from adminPassword');
  } else {
    log.warn('created user "admin" with a random password; it is printed once on standard output, as the "admin password:" line');
    announce(`admin password: ${password}`);
  }
}
