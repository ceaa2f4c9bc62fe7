/**
 * Webhooks, wired into a node: the outbox every event source writes to,
 * the delivery worker, the metrics, and (in a cluster) the hand-over of
 * rows claimed by nodes that died. With no `webhooks` configured nothing
 * is installed: no watcher, no worker, no row written.
 *
 *   events.ts    event names; what the sources see of the outbox (EventSink)
 *   spec.ts      the `webhooks` config key
 *   outbox.ts    building rows; batched writes of events with no store change
 *   sources.ts   sessions and broker traffic turned into events
 *   delivery.ts  the worker: claim, sign, POST, retry, dead list
 *   signing.ts   Herald-Signature
 *   metrics.ts   herald_webhook_*
 */
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Broker } from '../core/broker.js';
import type { ClusterControl } from '../core/cluster-link.js';
import type { Metrics } from '../core/metrics.js';
import type { Presence } from '../core/presence.js';
import type { SessionRegistry } from '../core/session.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { DeliveryWorker } from './delivery.js';
import type { EventSink } from './events.js';
import { WebhookMetrics } from './metrics.js';
import { Outbox } from './outbox.js';
import { brokerWatcher, watchSessions } from './sources.js';
import type { WebhookSpec } from './spec.js';

export interface WebhookParts {
  config: Config;
  store: Store;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  sessions: SessionRegistry;
  broker: Broker;
  presence: Presence;
  /** Services that write events with their own store changes. */
  writers: { events: EventSink | undefined }[];
  nodeId: string;
  /** This incarnation's owner id (single node; in a cluster the cluster's, which may change). */
  owner: string;
  cluster: ClusterControl | undefined;
}

/** A node's webhooks: what the admin API needs, and shutdown. */
export class Webhooks {
  private constructor(
    readonly specs: readonly WebhookSpec[],
    private readonly outbox: Outbox,
    private readonly worker: DeliveryWorker,
    private readonly waitMs: number,
  ) {}

  /** Sets everything up and starts delivering; undefined when no webhook is configured. */
  static async start(p: WebhookParts): Promise<Webhooks | undefined> {
    const specs = p.config.webhooks;
    if (specs.length === 0) return undefined;
    const log = p.log.child({ component: 'webhooks' });
    const metrics = new WebhookMetrics(p.metrics.registry);
    const owner = (): string => p.cluster?.owner ?? p.owner;
    const worker = new DeliveryWorker(
      p.store,
      specs,
      owner,
      {
        maxAttempts: p.config.webhookMaxAttempts,
        retryBaseMs: p.config.webhookRetryBaseMs,
        retryMaxMs: p.config.webhookRetryMaxMs,
        timeoutMs: p.config.webhookTimeoutMs,
        concurrency: p.config.webhookConcurrency,
        retentionHours: p.config.webhookRetentionHours,
        deadRetentionDays: p.config.webhookDeadRetentionDays,
      },
      p.clock,
      log,
      metrics,
    );
    const outbox = new Outbox(specs, p.store, p.clock, log, metrics, () => worker.poke());
    for (const w of p.writers) w.events = outbox;
    watchSessions(p.sessions, outbox, p.nodeId);
    const watcher = brokerWatcher(outbox, { sessions: p.sessions, presence: p.presence, users: p.store, log });
    if (watcher) p.broker.watch(watcher);
    if (p.cluster) {
      // Rows claimed by an incarnation that was fenced (its node died or was cut off) go back to everyone.
      p.cluster.onHeartbeat(async (live) => {
        if ((await p.store.releaseDeadWebhookClaims([...live])) > 0) worker.poke();
      });
    } else {
      // A single node owns everything: claims an earlier run left are free again.
      await p.store.releaseDeadWebhookClaims([p.owner]).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not free the webhook claims of an earlier run'));
    }
    worker.start();
    log.info({ webhooks: specs.map((s) => ({ name: s.name, events: s.events.length })) }, 'webhooks on');
    return new Webhooks(specs, outbox, worker, Math.min(p.config.webhookTimeoutMs, 3000));
  }

  /** Rows may be due (a replay): look now. */
  poke(): void {
    this.worker.poke();
  }

  /** The last batched events are written, requests under way get a moment, claims go back. */
  async stop(): Promise<void> {
    await this.outbox.stop();
    await this.worker.stop(this.waitMs);
  }
}
