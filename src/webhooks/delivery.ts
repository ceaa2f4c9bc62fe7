/**
 * The delivery worker, one per node: claims due rows of the outbox (at most
 * one per ordering key, see WebhookStore.claimWebhookEvents), POSTs each to
 * its webhook, signed, and records the outcome. A 2xx answer is delivered;
 * anything else (another status, no answer within webhookTimeoutMs, no
 * connection) is retried after an exponential back-off with jitter, until
 * webhookMaxAttempts, then the row goes to the dead list.
 *
 * The worker looks for work when events are written on this node, when a
 * retry it scheduled is due, and every POLL_MS besides (events written by
 * other nodes, retries other nodes scheduled, rows freed from a dead node).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Clock } from '../clock.js';
import { OutageLog, errorText, repeat } from '../core/background.js';
import type { Logger } from '../log.js';
import type { WebhookDelivery, WebhookStore } from '../store/webhooks.js';
import type { WebhookMetrics } from './metrics.js';
import { webhookHeaders } from './signing.js';
import type { WebhookSpec } from './spec.js';

const POLL_MS = 500;
const FIGURES_MS = 5000;
const PRUNE_MS = 60_000;
const PRUNE_BATCH = 1000;

export interface DeliverySettings {
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  timeoutMs: number;
  concurrency: number;
  retentionHours: number;
  deadRetentionDays: number;
}

/** The wait after `failures` failed attempts: base · 2^(failures−1), at most `maxMs`, ±20%. */
export function retryDelay(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.round(Math.min(baseMs * 2 ** Math.min(failures - 1, 40), maxMs) * (0.8 + 0.4 * random()));
}

export interface Outcome {
  /** 2xx. */
  ok: boolean;
  status: number | null;
  /** What went wrong, in words (empty when ok). */
  error: string;
  /** For the failures metric: http_<status>, timeout or network. */
  reason: string;
}

/** The first bytes of a refusal's answer, for the error a person reads in the dead list. */
const ANSWER_BYTES = 300;

/**
 * One signed POST of an event's body. Never throws. (Node's http client
 * rather than fetch, which refuses ports it deems unsafe, such as 6667.)
 */
export function post(url: string, eventId: string, secret: string, body: string, timeoutMs: number, nowMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const target = new URL(url);
    const data = Buffer.from(body, 'utf8');
    const headers = { ...webhookHeaders(eventId, secret, body, nowMs), 'content-length': String(data.length) };
    let settled = false;
    const finish = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(o);
    };
    const req = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { method: 'POST', headers });
    const timer = setTimeout(() => {
      finish({ ok: false, status: null, error: `no answer within ${timeoutMs} ms`, reason: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, status: null, error: `could not reach ${target.host}: ${err.code ?? errorText(err)}`, reason: 'network' }));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) {
        res.resume(); // the answer's body is not needed; reading it frees the connection for the next request
        finish({ ok: true, status, error: '', reason: '' });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (): void => {
        const answer = Buffer.concat(chunks).toString('utf8').slice(0, ANSWER_BYTES).replace(/\s+/g, ' ').trim();
        const location = res.headers.location;
        const redirect = status >= 300 && status < 400 ? ` (redirects are not followed: configure the final URL${location ? `, ${location}` : ''})` : '';
        finish({ ok: false, status, error: `HTTP ${status}${redirect}${answer ? `: ${answer}` : ''}`, reason: `http_${status}` });
      };
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (size >= ANSWER_BYTES) {
          done();
          res.destroy();
        }
      });
      res.on('end', done);
      res.on('error', done);
    });
    req.end(data);
  });
}

export class DeliveryWorker {
  private readonly specs: Map<string, WebhookSpec>;
  private readonly names: string[];
  private inflight = 0;
  private pumping = false;
  private again = false;
  private stopped = false;
  private readonly running = new Set<Promise<void>>();
  /** Outcomes the store could not take yet (it was away): written before anything new is claimed. */
  private unsettled: (() => Promise<void>)[] = [];
  private pokeTimer: NodeJS.Timeout | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly storeOutage: OutageLog;
  private readonly receiverOutage = new Map<string, OutageLog>();

  constructor(
    private readonly store: WebhookStore,
    specs: readonly WebhookSpec[],
    /** This node's owner id now (it changes when the node was fenced and goes on as a new incarnation). */
    private readonly owner: () => string,
    private readonly settings: DeliverySettings,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly metrics: WebhookMetrics,
  ) {
    this.specs = new Map(specs.map((s) => [s.name, s]));
    this.names = [...this.specs.keys()];
    this.storeOutage = new OutageLog(log, 'claiming webhook events');
    for (const s of specs) this.receiverOutage.set(s.name, new OutageLog(log, `delivering to webhook ${s.name}`));
  }

  start(): void {
    this.timers.push(setInterval(() => void this.pump(), POLL_MS));
    this.timers.push(repeat(this.log, 'reading the webhook backlog', FIGURES_MS, () => this.refreshFigures(), { now: true }));
    this.timers.push(repeat(this.log, 'the webhook retention sweep', PRUNE_MS, () => this.prune(), { now: true }));
    for (const t of this.timers) t.unref();
    void this.pump();
  }

  /** Events may have been written, or a row freed: look soon (pokes within a few ms share one look). */
  poke(): void {
    if (this.stopped || this.pokeTimer) return;
    this.pokeTimer = setTimeout(() => {
      this.pokeTimer = undefined;
      void this.pump();
    }, 2);
  }

  /** Claims what is due, as long as there is room for more requests. */
  private async pump(): Promise<void> {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.again = false;
        if (!(await this.settleLeftovers())) return;
        while (!this.stopped && this.inflight < this.settings.concurrency) {
          const rows = await this.store.claimWebhookEvents(this.owner(), this.names, this.clock.now(), this.settings.concurrency - this.inflight);
          this.storeOutage.ok();
          if (rows.length === 0) break;
          for (const row of rows) this.launch(row);
        }
      } while (this.again && !this.stopped);
    } catch (err) {
      this.storeOutage.failed(err);
    } finally {
      this.pumping = false;
    }
  }

  private launch(row: WebhookDelivery): void {
    this.inflight++;
    const run: Promise<void> = this.attempt(row)
      .catch((err: unknown) => this.log.error({ err, webhook: row.webhook, eventId: row.eventId }, 'webhook attempt failed'))
      .finally(() => {
        this.inflight--;
        this.running.delete(run);
        this.poke();
      });
    this.running.add(run);
  }

  private async attempt(row: WebhookDelivery): Promise<void> {
    const spec = this.specs.get(row.webhook)!;
    const started = performance.now();
    const outcome = await post(spec.url, row.eventId, spec.secret, row.body, this.settings.timeoutMs, this.clock.now());
    this.metrics.requestSeconds.labels(spec.name).observe((performance.now() - started) / 1000);
    const now = this.clock.now();
    const outage = this.receiverOutage.get(spec.name)!;
    if (outcome.ok) {
      outage.ok();
      this.metrics.delivered.labels(spec.name).inc();
      this.metrics.latency.labels(spec.name).observe(Math.max(0, now - row.createdAt) / 1000);
      await this.settle(() => this.store.webhookDelivered(row.id, now, outcome.status!));
      return;
    }
    outage.failed(new Error(outcome.error));
    this.metrics.failures.labels(spec.name, outcome.reason).inc();
    const failures = row.attempts + 1;
    const retryAt = failures >= this.settings.maxAttempts ? null : now + retryDelay(failures, this.settings.retryBaseMs, this.settings.retryMaxMs);
    if (retryAt === null) {
      this.log.warn({ webhook: spec.name, eventId: row.eventId, type: row.type, attempts: failures, error: outcome.error }, 'webhook event failed its last attempt: it is on the dead list (replay it with the admin API)');
    }
    const owner = row.claimedBy ?? this.owner();
    await this.settle(() => this.store.webhookFailed(row.id, owner, now, retryAt, outcome.status, outcome.error));
    if (retryAt !== null) this.wakeUpAt(retryAt);
  }

  /** Records an outcome; if the store is away, keeps it to write before anything new is claimed (the row stays claimed meanwhile). */
  private async settle(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      this.storeOutage.failed(err);
      this.unsettled.push(write);
    }
  }

  /** Writes outcomes left over from a store outage; false while the store still refuses them. */
  private async settleLeftovers(): Promise<boolean> {
    while (this.unsettled.length > 0) {
      try {
        await this.unsettled[0]!();
      } catch (err) {
        this.storeOutage.failed(err);
        return false;
      }
      this.unsettled.shift();
    }
    return true;
  }

  /** A retry this node scheduled is due then: look at that moment rather than at the next poll. */
  private wakeUpAt(at: number): void {
    if (this.stopped || at >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeAt = Infinity;
      this.wakeTimer = undefined;
      void this.pump();
    }, Math.max(0, at - this.clock.now()) + 5);
    this.wakeTimer.unref();
  }

  /** The backlog figures on /metrics. */
  async refreshFigures(): Promise<void> {
    const now = this.clock.now();
    const rows = await this.store.webhookBacklog();
    const seen = new Set<string>();
    for (const r of rows) {
      seen.add(r.webhook);
      this.metrics.backlog.labels(r.webhook).set(r.pending);
      this.metrics.dead.labels(r.webhook).set(r.dead);
      this.metrics.oldestPending.labels(r.webhook).set(r.oldestPendingAt === null ? 0 : Math.max(0, now - r.oldestPendingAt) / 1000);
    }
    for (const name of this.names) {
      if (seen.has(name)) continue;
      this.metrics.backlog.labels(name).set(0);
      this.metrics.dead.labels(name).set(0);
      this.metrics.oldestPending.labels(name).set(0);
    }
  }

  /** Retention: delivered rows after webhookRetentionHours, dead ones after webhookDeadRetentionDays, in bounded steps. */
  private async prune(): Promise<void> {
    const now = this.clock.now();
    const deliveredBefore = now - this.settings.retentionHours * 3_600_000;
    const deadBefore = now - this.settings.deadRetentionDays * 86_400_000;
    for (let step = 0; step < 100 && !this.stopped; step++) {
      if ((await this.store.pruneWebhookEvents(deliveredBefore, deadBefore, PRUNE_BATCH)) < PRUNE_BATCH) break;
      await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * Shutdown: nothing new is claimed; requests under way get a moment to
   * finish (at most `waitMs`), then this node's claims are handed back.
   */
  async stop(waitMs: number): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.pokeTimer);
    clearTimeout(this.wakeTimer);
    if (this.running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => (timer = setTimeout(r, waitMs)))]);
      clearTimeout(timer);
    }
    await this.settleLeftovers();
    await this.store.releaseWebhookClaims(this.owner()).catch((err: unknown) => this.log.warn({ err: errorText(err) }, 'could not hand back webhook claims at shutdown'));
  }
}
