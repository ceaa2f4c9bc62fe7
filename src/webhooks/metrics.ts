/**
 * The webhook figures on /metrics (registered on the node's registry when
 * webhooks are configured). Backlog, dead and oldest-pending describe the
 * whole outbox, read from the store: in a cluster every node shows the same
 * figures (take the max, not the sum).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export class WebhookMetrics {
  readonly backlog: Gauge<'webhook'>;
  readonly dead: Gauge<'webhook'>;
  readonly oldestPending: Gauge<'webhook'>;
  readonly latency: Histogram<'webhook'>;
  readonly requestSeconds: Histogram<'webhook'>;
  readonly delivered: Counter<'webhook'>;
  readonly failures: Counter<'webhook' | 'reason'>;
  readonly outboxDropped: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.backlog = new Gauge({ name: 'herald_webhook_backlog', help: 'Webhook events waiting to be delivered (the whole outbox), by webhook', labelNames: ['webhook'], registers });
    this.dead = new Gauge({ name: 'herald_webhook_dead', help: 'Webhook events on the dead list (the whole outbox), by webhook', labelNames: ['webhook'], registers });
    this.oldestPending = new Gauge({
      name: 'herald_webhook_oldest_pending_seconds',
      help: 'Age of the oldest webhook event waiting to be delivered, by webhook (0 when none waits)',
      labelNames: ['webhook'],
      registers,
    });
    this.latency = new Histogram({
      name: 'herald_webhook_delivery_seconds',
      help: 'Time from a webhook event being written to its delivery (retries included), by webhook; delivered by this node',
      labelNames: ['webhook'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600, 3600, 21_600, 86_400],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'herald_webhook_request_seconds',
      help: 'Duration of one webhook request, by webhook, whatever its outcome',
      labelNames: ['webhook'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.delivered = new Counter({ name: 'herald_webhook_deliveries_total', help: 'Webhook events delivered by this node, by webhook', labelNames: ['webhook'], registers });
    this.failures = new Counter({
      name: 'herald_webhook_failures_total',
      help: 'Failed webhook attempts by this node, by webhook and reason (http_<status>, timeout, network)',
      labelNames: ['webhook', 'reason'],
      registers,
    });
    this.outboxDropped = new Counter({
      name: 'herald_webhook_outbox_dropped_total',
      help: 'Events with no store change of their own (connects, subscriptions, publishes) dropped because the store was away too long to take them',
      registers,
    });
  }
}
