/**
 * The outbox's writing side (EventSink): builds an event's rows, one per
 * webhook that takes it, and writes the events that go with no store change
 * of their own (connects, subscriptions, publishes) in batches: whatever
 * arrives within a few milliseconds goes in one transaction, so a connect
 * storm is a few writes, not one fsync per connect.
 *
 * Such an event exists once its batch is written: a crash in those few
 * milliseconds loses it. Events that describe a store change are written in
 * that change's own transaction (`rows`), and are never lost.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { OutageLog } from '../core/background.js';
import { topicMatches } from '../core/destination.js';
import type { Logger } from '../log.js';
import type { NewWebhookEvent, WebhookStore } from '../store/webhooks.js';
import type { EventSink, WebhookEventType } from './events.js';
import type { WebhookMetrics } from './metrics.js';
import type { WebhookSpec } from './spec.js';

/** How long an event waits for others to share its write. */
const BATCH_MS = 5;
/** Most events in one write. */
const BATCH_MAX = 500;
/** After a failed write, the batch is tried again this much later. */
const RETRY_MS = 1000;
/** Events held while the store is away; past it the oldest are dropped (and counted). */
const HELD_MAX = 100_000;

export class Outbox implements EventSink {
  private readonly byType = new Map<WebhookEventType, WebhookSpec[]>();
  private queue: NewWebhookEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private readonly outage: OutageLog;
  private dropped = 0;
  private stopped = false;

  constructor(
    specs: readonly WebhookSpec[],
    private readonly store: Pick<WebhookStore, 'insertWebhookEvents'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly metrics: WebhookMetrics,
    /** Called when events may have been written: the delivery worker looks for them. */
    private readonly written: () => void,
  ) {
    for (const s of specs) {
      for (const e of s.events) this.byType.set(e, [...(this.byType.get(e) ?? []), s]);
    }
    this.outage = new OutageLog(log, 'writing webhook events');
  }

  wants(type: WebhookEventType): boolean {
    return this.byType.has(type);
  }

  rows(type: WebhookEventType, key: string, data: object, topic?: string): NewWebhookEvent[] {
    const specs = this.byType.get(type);
    if (!specs) return [];
    const targets = topic === undefined ? specs : specs.filter((s) => s.topics.length === 0 || s.topics.some((f) => topicMatches(f, topic)));
    if (targets.length === 0) return [];
    const eventId = randomUUID();
    const createdAt = this.clock.now();
    const body = JSON.stringify({ id: eventId, type, createdAt: new Date(createdAt).toISOString(), data });
    // The caller's transaction commits soon after this; the worker looks a moment later (and polls besides).
    this.written();
    return targets.map((s) => ({ eventId, webhook: s.name, type, orderKey: key, body, createdAt }));
  }

  emit(type: WebhookEventType, key: string, data: object, topic?: string): void {
    if (this.stopped) return;
    const rows = this.rows(type, key, data, topic);
    if (rows.length === 0) return;
    this.queue.push(...rows);
    if (this.queue.length > HELD_MAX) {
      const over = this.queue.length - HELD_MAX;
      this.queue.splice(0, over);
      this.metrics.outboxDropped.inc(over);
      if (this.dropped === 0) this.log.error({ held: HELD_MAX }, 'the store has not taken webhook events for too long: the oldest connect, subscription and publish events are dropped');
      this.dropped += over;
    }
    this.schedule(BATCH_MS);
  }

  private schedule(ms: number): void {
    if (this.timer || this.writing) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
  }

  /** Writes what is queued, a batch at a time, in order; a failed batch stays first in line. */
  flush(): Promise<void> {
    this.writing ??= this.writeAll().finally(() => {
      this.writing = undefined;
      if (this.queue.length > 0) this.schedule(this.outage.failing ? RETRY_MS : 0);
    });
    return this.writing;
  }

  private async writeAll(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, BATCH_MAX);
      try {
        await this.store.insertWebhookEvents(batch);
      } catch (err) {
        this.outage.failed(err);
        return;
      }
      this.outage.ok();
      this.dropped = 0;
      // Only now: events queued meanwhile stay behind the batch, in order.
      this.queue.splice(0, batch.length);
      this.written();
    }
  }

  /** Shutdown: the last events are written (one try) and nothing more is scheduled. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    await this.flush();
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length > 0) this.log.warn({ events: this.queue.length }, 'webhook events not written at shutdown: the store is unavailable');
  }
}
