import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from '../store/store.js';

/** Every protocol counts into these, so one scrape shows the whole broker. */
export class Metrics {
  readonly registry = new Registry();
  readonly connections = new Gauge({
    name: 'herald_connections',
    help: 'Open client connections by protocol',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });
  readonly messagesIn = new Counter({
    name: 'herald_messages_in_total',
    help: 'Messages received from clients and the HTTP API, by protocol',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });
  readonly messagesOut = new Counter({
    name: 'herald_messages_out_total',
    help: 'Messages delivered to clients, by protocol',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });
  readonly protocolErrors = new Counter({
    name: 'herald_protocol_errors_total',
    help: 'Connections refused or closed because of bad input, by protocol and reason',
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
  readonly httpRequests = new Counter({
    name: 'herald_http_requests_total',
    help: 'HTTP requests by route and status class',
    labelNames: ['route', 'status'] as const,
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

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'herald_' });
  }
}

/** Wraps a Store so every call is timed into herald_store_seconds{op}. */
export function timedStore(store: Store, metrics: Metrics): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      const fn = value as (...args: unknown[]) => unknown;
      const histogram = metrics.storeSeconds.labels(prop);
      return (...args: unknown[]) => {
        const end = histogram.startTimer();
        const result = fn.apply(target, args);
        if (result instanceof Promise) return result.finally(end);
        end();
        return result;
      };
    },
  });
}
