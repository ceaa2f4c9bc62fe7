/**
 * The audit log: what administrators did through the HTTP API (who, what,
 * when, from where), newest first, pruned by age and count.
 * Implemented by sqlite/audit.ts and postgres/audit.ts.
 */
import type { Page } from './messages.js';

export interface NewAuditEntry {
  /** When (ms since epoch). */
  at: number;
  /** Who: the user id and name of the caller. */
  actorId: string;
  actorName: string;
  /** What, as `area.verb`: `user.create`, `app.rotate`, `session.disconnect`. */
  action: string;
  /** What it was done to, in words (`user "bob" (id 7)`); may be empty. */
  target: string;
  /** Further facts as JSON text (`{"role":"admin"}`), never a secret; `{}` when none. */
  detail: string;
  /** From where: the caller's address as the HTTP server saw it (trustProxy applies). */
  address: string;
  /** The node that served the call. */
  node: string;
}

export interface AuditRecord extends NewAuditEntry {
  id: string;
}

export interface AuditQuery {
  /** 1-based. */
  page: number;
  size: number;
  /** Only entries whose action is this one or starts with it and a dot (`user` finds `user.create`). */
  action?: string;
  /** Only entries by this actor name. */
  actor?: string;
}

export interface AuditStore {
  /** Appends one entry. */
  insertAudit(entry: NewAuditEntry): Promise<void>;
  /** Entries newest first, with the total that match. */
  queryAudit(query: AuditQuery): Promise<Page<AuditRecord>>;
  /**
   * Retention, one bounded step: deletes up to `batch` entries older than
   * `olderThan`, or beyond the newest `maxRows`. Returns how many it removed;
   * 0 means done for now.
   */
  pruneAudit(olderThan: number, maxRows: number, batch: number): Promise<number>;
}
