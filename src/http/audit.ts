/**
 * The audit trail of admin actions: each route that changes something for
 * an administrator (users, apps, sessions, messages, threads, reloads)
 * records who did what to what, when and from where, in the store's audit
 * log; the console's Audit log page reads it. Entries older than
 * AUDIT_RETENTION_DAYS, or beyond the newest AUDIT_MAX_ROWS, are pruned
 * hourly by every node (pruning is idempotent).
 *
 * Recording never fails the action it records: the action has happened by
 * then, so a store that cannot take the entry is logged (once per outage)
 * instead of turning a done change into an error.
 */
import type { FastifyRequest } from 'fastify';
import type { Clock } from '../clock.js';
import { outageLog, repeat } from '../core/background.js';
import type { Logger } from '../log.js';
import type { AuditStore } from '../store/store.js';

export const AUDIT_RETENTION_DAYS = 90;
export const AUDIT_MAX_ROWS = 100_000;
const PRUNE_EVERY_MS = 3_600_000;
const PRUNE_BATCH = 5000;

/** Facts about an action worth keeping beside it; never a password or a secret. */
export type AuditDetail = Record<string, string | number | boolean | null | readonly string[]>;

export class AuditTrail {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: AuditStore,
    private readonly node: string,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Starts the hourly pruning (its first run a minute after start, off the start-up path). */
  start(): void {
    const first = setTimeout(() => void this.pruneNow().catch(() => undefined), 60_000);
    first.unref();
    this.timer = repeat(this.log, 'pruning the audit log', PRUNE_EVERY_MS, () => this.pruneNow());
    this.stopFirst = () => clearTimeout(first);
  }
  private stopFirst: () => void = () => undefined;

  stop(): void {
    this.stopFirst();
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Deletes what is past the retention, a batch at a time, until nothing is. */
  async pruneNow(): Promise<number> {
    const olderThan = this.clock.now() - AUDIT_RETENTION_DAYS * 86_400_000;
    let total = 0;
    for (;;) {
      const n = await this.store.pruneAudit(olderThan, AUDIT_MAX_ROWS, PRUNE_BATCH);
      total += n;
      if (n < PRUNE_BATCH) return total;
    }
  }

  /**
   * Records that the caller of `req` (an authenticated route) did `action`
   * (`area.verb`) to `target` (in words), with `detail`.
   */
  async record(req: FastifyRequest, action: string, target: string, detail: AuditDetail = {}): Promise<void> {
    const who = req.principal;
    try {
      await this.store.insertAudit({
        at: this.clock.now(),
        actorId: who?.userId ?? '',
        actorName: who?.name ?? '(anonymous)',
        action,
        target,
        detail: JSON.stringify(detail),
        address: req.ip,
        node: this.node,
      });
      outageLog(this.log, 'writing the audit log').ok();
    } catch (err) {
      outageLog(this.log, 'writing the audit log').failed(err);
      this.log.warn({ action, target, actor: who?.name }, 'an admin action was not written to the audit log');
    }
  }
}
