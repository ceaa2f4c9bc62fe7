/**
 * Node health for the console, on every node: listeners and ports (TLS,
 * connections against each cap), memory and heap, event-loop delay, the
 * store and Redis, version and uptime, and alarms in words: a listener or a
 * user near its connection cap, the SQLite file near sqliteMaxSizeMb, the
 * heap near its limit, the event loop slow, the store or Redis unreachable,
 * and (the store is shared) webhook events waiting long or dead.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { ok } from './envelope.js';
import { ClusterQuestions } from '../core/cluster-survey.js';
import { HERALD_VERSION } from '../version.js';
import type { BoundAddress } from '../transports/listeners.js';
import { arrayOf, closed, okEnvelope, type JsonSchema } from './schemas.js';

/** Past these shares of a limit an alarm is raised: a warning, then critical. */
const WARN_SHARE = 0.8;
const CRITICAL_SHARE = 0.95;
/** Event-loop delay (the worst over the last sample interval) that is a warning, and critical. */
const LOOP_WARN_MS = 200;
const LOOP_CRITICAL_MS = 1000;
/** A webhook event pending longer than this is a warning. */
const WEBHOOK_LATE_MS = 60_000;
const PING_TIMEOUT_MS = 2000;

export interface Alarm {
  level: 'warning' | 'critical';
  /** What it is about, for filtering: listener, user, disk, heap, loop, store, redis, webhook. */
  about: string;
  text: string;
}

/** What the listener of each name serves, in words. */
const SERVES: Record<string, string> = {
  http: 'HTTP API, console, WebSocket paths (/v1/ws, /stomp, /websocket/…, /mqtt)',
  https: 'the same over TLS',
  admin: 'admin port: console, /metrics, /api/admin/*',
  stomp: 'STOMP over TCP',
  'stomp-tls': 'STOMP over TLS',
  mqtt: 'MQTT over TCP',
  'mqtt-tls': 'MQTT over TLS',
};

const int = { type: 'integer' } as const;
const ALARM = closed({ level: { type: 'string', enum: ['warning', 'critical'] }, about: { type: 'string' }, text: { type: 'string' } });
const NODE_HEALTH: JsonSchema = closed({
  node: { type: 'string' },
  version: { type: 'string' },
  runtime: { type: 'string', description: 'Node.js version' },
  pid: int,
  uptimeSeconds: int,
  listeners: arrayOf(closed({ name: { type: 'string' }, serves: { type: 'string' }, host: { type: 'string' }, port: int, tls: { type: 'boolean' }, connections: { type: ['integer', 'null'], description: 'held now (HTTP/HTTPS: WebSocket sessions); null when not counted' }, max: { ...int, description: '0: no cap' } })),
  sessions: int,
  memory: closed({ rss: int, heapUsed: int, heapTotal: int, heapLimit: int, external: int }),
  eventLoop: closed({ meanMs: { type: ['number', 'null'] }, maxMs: { type: ['number', 'null'] }, sampledAt: { type: ['string', 'null'], format: 'date-time' } }),
  store: closed(
    { kind: { type: 'string', enum: ['sqlite', 'postgres'] }, reachable: { type: 'boolean' }, pingMs: { type: ['number', 'null'] }, error: { type: 'string' }, sizeBytes: int, maxBytes: { ...int, description: 'sqliteMaxSizeMb in bytes; 0: no limit' } },
    ['error', 'sizeBytes', 'maxBytes'],
  ),
  redis: { anyOf: [{ type: 'null' }, closed({ connected: { type: 'boolean' }, dropped: { ...int, description: 'messages the bus dropped while Redis was away, since start' } })] },
  alarms: arrayOf(ALARM),
});

export interface NodeParts {
  /** The bound addresses (filled once the listeners are bound). */
  addresses: readonly BoundAddress[];
  occupancy(): Map<string, { connections: number; max: number }>;
  startedAt: number;
  /** In a cluster: whether Redis answers, and what the bus dropped. */
  redis: (() => { connected: boolean; dropped: number }) | undefined;
}

export function registerNodeRoutes(ctx: RouteContext, parts: NodeParts): void {
  const { http, store, config, sessions, history } = ctx;
  const managers = requireAuth(ctx, ['admin', 'service']);

  const ping = async (): Promise<{ reachable: boolean; pingMs: number | null; error?: string }> => {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([store.ping(), new Promise((_r, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS)))]);
      return { reachable: true, pingMs: Math.round((performance.now() - started) * 100) / 100 };
    } catch (err) {
      return { reachable: false, pingMs: null, error: (err as Error).message };
    } finally {
      clearTimeout(timer);
    }
  };

  const health = async () => {
    const alarms: Alarm[] = [];
    const share = (used: number, max: number): Alarm['level'] | undefined => (max <= 0 ? undefined : used >= max * CRITICAL_SHARE ? 'critical' : used >= max * WARN_SHARE ? 'warning' : undefined);
    const occupancy = parts.occupancy();
    const listeners = parts.addresses.map((a) => {
      const o = occupancy.get(a.name);
      const level = o && share(o.connections, o.max);
      if (level && o) alarms.push({ level, about: 'listener', text: `listener ${a.name} holds ${o.connections} of its ${o.max} connections (${a.name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())}MaxConnections)` });
      return { name: a.name, serves: SERVES[a.name] ?? a.name, host: a.host, port: a.port, tls: a.name === 'https' || a.name.endsWith('-tls'), connections: o ? o.connections : null, max: o?.max ?? 0 };
    });
    const perUser = new Map<string, { name: string; n: number }>();
    for (const s of sessions.all()) {
      const u = perUser.get(s.principal.userId) ?? { name: s.principal.name, n: 0 };
      u.n++;
      perUser.set(s.principal.userId, u);
    }
    for (const u of perUser.values()) {
      const level = share(u.n, config.maxConnectionsPerUser);
      if (level) alarms.push({ level, about: 'user', text: `user ${u.name} holds ${u.n} of the ${config.maxConnectionsPerUser} connections one user may (maxConnectionsPerUser)` });
    }
    const mem = process.memoryUsage();
    const heapLimit = getHeapStatistics().heap_size_limit;
    const heapLevel = share(mem.heapUsed, heapLimit);
    if (heapLevel) alarms.push({ level: heapLevel, about: 'heap', text: `the JavaScript heap uses ${mib(mem.heapUsed)} of its ${mib(heapLimit)} limit` });
    const latest = history.latest();
    const loopMax = latest?.values['loop.max'] ?? null;
    if (loopMax !== null && loopMax >= LOOP_WARN_MS) {
      alarms.push({ level: loopMax >= LOOP_CRITICAL_MS ? 'critical' : 'warning', about: 'loop', text: `the event loop was held up to ${Math.round(loopMax)} ms in the last ${history.sampleMs / 1000} s (clients wait that long)` });
    }
    const reach = await ping();
    if (!reach.reachable) alarms.push({ level: 'critical', about: 'store', text: `the ${store.kind === 'sqlite' ? 'SQLite' : 'PostgreSQL'} store does not answer: ${reach.error ?? ''}` });
    let size: { sizeBytes: number; maxBytes: number } | undefined;
    if (store.kind === 'sqlite' && config.dataDir !== ':memory:') {
      // The file and its write-ahead log: what was written lives in the WAL until a checkpoint moves it.
      const file = join(config.dataDir, 'herald.db');
      const sizeBytes = fileSize(file) + fileSize(file + '-wal');
      const maxBytes = config.sqliteMaxSizeMb * 1_048_576;
      size = { sizeBytes, maxBytes };
      const level = share(sizeBytes, maxBytes);
      if (level) alarms.push({ level, about: 'disk', text: `the SQLite file is ${mib(sizeBytes)} of its ${config.sqliteMaxSizeMb} MiB limit (sqliteMaxSizeMb); at the limit writes are refused` });
    }
    const redis = parts.redis?.() ?? null;
    if (redis && !redis.connected) alarms.push({ level: 'critical', about: 'redis', text: 'Redis does not answer: other nodes\' messages do not reach this node, nor its theirs' });
    return {
      node: ctx.nodeId,
      version: HERALD_VERSION,
      runtime: process.version,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - parts.startedAt) / 1000),
      listeners,
      sessions: sessions.size,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, heapLimit, external: mem.external },
      eventLoop: { meanMs: latest?.values['loop.mean'] ?? null, maxMs: loopMax, sampledAt: latest ? new Date(latest.at).toISOString() : null },
      store: { kind: store.kind, ...reach, ...size },
      redis,
      alarms,
    };
  };
  const ask = new ClusterQuestions(ctx.nodeId, ctx.cluster, ctx.presence).define<Record<string, never>, Awaited<ReturnType<typeof health>>>('console.health?', () => health());

  http.get(
    '/api/admin/nodes',
    {
      preHandler: managers,
      schema: {
        tags: ['admin'],
        operationId: 'nodeHealth',
        summary: 'The health of every node: listeners, memory, event loop, store, Redis, version, uptime and alarms',
        response: {
          200: okEnvelope(
            closed({ nodes: arrayOf(NODE_HEALTH), alarms: { ...arrayOf(ALARM), description: 'the cluster\'s own (webhooks: the store is shared)' }, missing: arrayOf({ type: 'string' }) }),
            'every node that answered, this one first',
          ),
        },
      },
    },
    async () => {
      const { answers, missing } = await ask({}, { timeoutMs: PING_TIMEOUT_MS + 500 });
      const alarms: Alarm[] = missing.map((n) => ({ level: 'warning', about: 'node', text: `node ${n} did not answer in time: its health is not shown` }));
      try {
        const now = Date.now();
        for (const b of await store.webhookBacklog()) {
          if (b.dead > 0) alarms.push({ level: 'warning', about: 'webhook', text: `webhook ${b.webhook}: ${b.dead} event${b.dead === 1 ? '' : 's'} on the dead list (replay them on the Webhooks page once the receiver is back)` });
          if (b.oldestPendingAt !== null && now - b.oldestPendingAt > WEBHOOK_LATE_MS) {
            alarms.push({ level: 'warning', about: 'webhook', text: `webhook ${b.webhook}: ${b.pending} event${b.pending === 1 ? '' : 's'} waiting, the oldest for ${Math.round((now - b.oldestPendingAt) / 1000)} s` });
          }
        }
      } catch {
        // The store is away: each node's own alarm says so.
      }
      return ok({ nodes: [...answers.values()], alarms, missing });
    },
  );
}

function mib(bytes: number): string {
  return `${(bytes / 1_048_576).toFixed(1)} MiB`;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
