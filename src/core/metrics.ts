import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from '../store/store.js';
import { HERALD_VERSION } from '../version.js';
import type { AclAction } from './acl.js';
import { PROTOCOLS, type Protocol, type ProtocolLabel } from './protocol-names.js';

/**
 * Why a client's authentication was refused (herald_auth_failures_total's
 * `reason`): the AuthError codes (`unavailable`: the connect hook could not
 * be asked), plus a client that sent no credentials
 * where they are required, and a refused MQTT app token.
 */
export const AUTH_FAILURE_REASONS = ['bad_credentials', 'invalid_token', 'token_expired', 'user_disabled', 'rate_limited', 'unavailable', 'no_credentials', 'app_token'] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

const ACL_ACTIONS: readonly AclAction[] = ['publish', 'subscribe'];

/** A labelled counter child, bound once. */
export interface CounterChild {
  inc(): void;
}

/**
 * Every protocol counts into these, so one scrape shows the whole broker.
 * Names follow the Prometheus conventions: the standard process_* and
 * nodejs_* metrics under their usual names, Herald's own under herald_,
 * and every series whose labels are known in advance present (at 0) from
 * the start, so a rate() or an alert never waits for the first event.
 * docs/deploy.md ("Metrics") lists them all.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly buildInfo = new Gauge({
    name: 'herald_build_info',
    help: 'Always 1; the labels say what this node runs: Herald and Node.js versions, the store, single node or cluster',
    labelNames: ['version', 'node_version', 'store', 'mode'] as const,
    registers: [this.registry],
  });
  /**
   * Counted per message or per connect: plain numbers, read into their
   * metrics when those are collected (a scrape, the console's history), so
   * the hot paths never hash a label set.
   */
  readonly connectionsOf: Readonly<Record<Protocol, Tally>> = tallies(PROTOCOLS);
  readonly messagesInOf: Readonly<Record<ProtocolLabel, Tally>> = tallies([...PROTOCOLS, 'http'] as const);
  readonly messagesOutOf: Readonly<Record<Protocol, Tally>> = tallies(PROTOCOLS);

  readonly connections = new Gauge({
    name: 'herald_connections',
    help: 'Open client connections by protocol',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
    collect: gaugeFrom(this.connectionsOf),
  });
  readonly messagesIn = new Counter({
    name: 'herald_messages_in_total',
    help: 'Messages received from clients and the HTTP API, by protocol',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
    collect: counterFrom(this.messagesInOf),
  });
  readonly messagesOut = new Counter({
    name: 'herald_messages_out_total',
    help: 'Messages delivered to clients, by protocol',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
    collect: counterFrom(this.messagesOutOf),
  });
  readonly authFailures = new Counter({
    name: 'herald_auth_failures_total',
    help: 'Refused authentications (logins, tokens, JWTs, app tokens), by protocol and reason',
    labelNames: ['protocol', 'reason'] as const,
    registers: [this.registry],
  });
  readonly aclDenials = new Counter({
    name: 'herald_acl_denials_total',
    help: 'Publishes and subscriptions refused by the access rules (aclFile), the connect hook\'s grants or the ACL hook, by protocol and action',
    labelNames: ['protocol', 'action'] as const,
    registers: [this.registry],
  });
  readonly slowConsumerDisconnects = new Counter({
    name: 'herald_slow_consumer_disconnects_total',
    help: 'Connections cut because the client did not keep up (socket backlog, held messages or bytes over their bounds), by protocol',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });
  readonly protocolErrors = new Counter({
    name: 'herald_protocol_errors_total',
    help: 'Requests and connections refused or closed for malformed input or over a limit, by protocol and reason',
    labelNames: ['protocol', 'reason'] as const,
    registers: [this.registry],
  });
  readonly storeSeconds = new Histogram({
    name: 'herald_store_seconds',
    help: 'Store call latency by operation',
    labelNames: ['op'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly httpRequestSeconds = new Histogram({
    name: 'herald_http_request_duration_seconds',
    help: 'HTTP API requests: time from arrival to the end of the answer, by method, route pattern ("unmatched" for no route) and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly unhandledRejections = new Counter({
    name: 'herald_unhandled_rejections_total',
    help: 'Promises rejected with nobody to handle them (a bug: logged as "unhandled rejection"); herald serve counts them instead of exiting',
    registers: [this.registry],
  });

  readonly busLag = new Histogram({
    name: 'herald_bus_lag_seconds',
    help: 'Cluster mode: time from publish on one node to arrival on another, through the bus',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly busMessages = new Counter({
    name: 'herald_bus_messages_total',
    help: 'Cluster mode: frames sent to and received from other nodes, by kind (message, queue poke, control)',
    labelNames: ['direction', 'kind'] as const,
    registers: [this.registry],
  });
  readonly clusterNodes = new Gauge({
    name: 'herald_cluster_nodes',
    help: 'Cluster mode: live nodes seen at the last heartbeat',
    registers: [this.registry],
  });

  private readonly authFailuresOf = new Map<string, CounterChild>();
  private readonly aclDenialsOf = new Map<string, CounterChild>();
  /** HTTP histogram children by method, route and status: a bounded set (route patterns, never URLs). */
  private readonly httpOf = new Map<string, { observe(seconds: number): void }>();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    for (const protocol of PROTOCOLS) {
      this.connections.set({ protocol }, 0);
      this.messagesOut.inc({ protocol }, 0);
      this.slowConsumerDisconnects.inc({ protocol }, 0);
    }
    for (const protocol of [...PROTOCOLS, 'http'] as const) {
      this.messagesIn.inc({ protocol }, 0);
      for (const reason of AUTH_FAILURE_REASONS) this.authFailuresOf.set(`${protocol} ${reason}`, this.zeroed(this.authFailures, { protocol, reason }));
      // The HTTP API publishes; it has no subscriptions.
      for (const action of protocol === 'http' ? (['publish'] as const) : ACL_ACTIONS) {
        this.aclDenialsOf.set(`${protocol} ${action}`, this.zeroed(this.aclDenials, { protocol, action }));
      }
    }
  }

  private zeroed<L extends string>(counter: Counter<L>, labels: Record<L, string>): CounterChild {
    counter.inc(labels, 0);
    return counter.labels(labels);
  }

  /** herald_build_info: what this node runs (set once at start, when the store and the mode are known). */
  describeNode(store: 'sqlite' | 'postgres', mode: 'single' | 'cluster'): void {
    this.buildInfo.reset();
    this.buildInfo.set({ version: HERALD_VERSION, node_version: process.version, store, mode }, 1);
  }

  /** A refused authentication (the client is told, and the connection or request refused). */
  authFailed(protocol: ProtocolLabel, reason: AuthFailureReason): void {
    this.authFailuresOf.get(`${protocol} ${reason}`)?.inc();
  }

  /** A publish or subscription the access rules refused (Acl counts its own refusals with this). */
  readonly aclDenied = (protocol: ProtocolLabel, action: AclAction): void => {
    this.aclDenialsOf.get(`${protocol} ${action}`)?.inc();
  };

  /** herald_slow_consumer_disconnects_total{protocol}, bound (a connection's DeliveryWindow counts its cut with it). */
  slowConsumerCounter(protocol: Protocol): () => void {
    let count = this.slowConsumerCounters.get(protocol);
    if (!count) {
      const child = this.slowConsumerDisconnects.labels(protocol);
      count = () => child.inc();
      this.slowConsumerCounters.set(protocol, count);
    }
    return count;
  }
  /** One bound counter per protocol: every connection asks for one. */
  private readonly slowConsumerCounters = new Map<Protocol, () => void>();

  /** One HTTP request answered: `route` is the route's pattern (`/api/users/:id`), never the URL. */
  observeHttp(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let child = this.httpOf.get(key);
    if (!child) this.httpOf.set(key, (child = this.httpRequestSeconds.labels(method, route, String(status))));
    child.observe(seconds);
  }
}

/** A count kept by whoever counts, as a plain number (see Metrics.messagesInOf). */
export class Tally {
  n = 0;
  inc(): void {
    this.n++;
  }
  dec(): void {
    this.n--;
  }
}

function tallies<L extends string>(labels: readonly L[]): Record<L, Tally> {
  const out = {} as Record<L, Tally>;
  for (const l of labels) out[l] = new Tally();
  return out;
}

/** A counter's collect: adds what each protocol's tally counted since the last collect. */
function counterFrom<L extends string>(of: Readonly<Record<L, Tally>>): (this: Counter<'protocol'>) => void {
  const reported = new Map<L, number>();
  return function collect(this: Counter<'protocol'>): void {
    for (const protocol of Object.keys(of) as L[]) {
      const n = of[protocol].n;
      const d = n - (reported.get(protocol) ?? 0);
      if (d > 0) {
        this.inc({ protocol }, d);
        reported.set(protocol, n);
      }
    }
  };
}

/** A gauge's collect: each protocol's tally as it is now. */
function gaugeFrom<L extends string>(of: Readonly<Record<L, Tally>>): (this: Gauge<'protocol'>) => void {
  return function collect(this: Gauge<'protocol'>): void {
    for (const protocol of Object.keys(of) as L[]) this.set({ protocol }, of[protocol].n);
  };
}

/** Wraps a Store so every call is timed into herald_store_seconds{op}. */
export function timedStore(store: Store, metrics: Metrics): Store {
  // One timed wrapper per method, made on its first use (not on every access: a send reads several).
  const wrapped = new Map<string, { of: unknown; timed: (...args: unknown[]) => unknown }>();
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      const known = wrapped.get(prop);
      if (known?.of === value) return known.timed;
      const fn = value as (...args: unknown[]) => unknown;
      const histogram = metrics.storeSeconds.labels(prop);
      const timed = (...args: unknown[]): unknown => {
        const end = histogram.startTimer();
        const result = fn.apply(target, args);
        if (result instanceof Promise) return result.finally(end);
        end();
        return result;
      };
      wrapped.set(prop, { of: value, timed });
      return timed;
    },
  });
}
