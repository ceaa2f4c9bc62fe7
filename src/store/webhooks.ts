/**
 * The webhook outbox: one row per event and webhook, written in the
 * transaction of the change the event describes (or on its own for events
 * with no store change), delivered at least once, in order per key.
 * Implemented by sqlite/webhooks.ts and postgres/webhooks.ts.
 *
 * Rows move pending → delivered, or pending → dead after the last attempt;
 * a replay moves dead rows back to pending. A pending row is claimed by one
 * node's incarnation (its owner id, as queue claims are) while it is being
 * sent; claims of incarnations that are gone are released
 * (`releaseDeadWebhookClaims`), so another node takes the row over.
 */

export type WebhookState = 'pending' | 'delivered' | 'dead';

export interface NewWebhookEvent {
  /** Herald-Event-Id: the same for every webhook the event goes to, and for every attempt. */
  eventId: string;
  /** The name of the webhook (config `webhooks[].name`, by default its URL). */
  webhook: string;
  type: string;
  /** Events of one key reach a webhook in the order they were written. */
  orderKey: string;
  /** The request body exactly as sent, JSON text. */
  body: string;
  createdAt: number;
}

export interface WebhookDelivery extends NewWebhookEvent {
  /** The row's id: increases with the order rows were written in. */
  id: string;
  state: WebhookState;
  /** Attempts made so far. */
  attempts: number;
  /** When the next attempt may be made (pending rows). */
  dueAt: number;
  claimedBy: string | null;
  /** HTTP status of the last attempt, if an answer came. */
  lastStatus: number | null;
  /** Why the last attempt failed, in words. */
  lastError: string | null;
  /** When it was delivered or given up. */
  finishedAt: number | null;
}

/** The events written with a store change, built once the change's id is known (a message's, a thread's). */
export type EventsOf<T> = (created: T) => readonly NewWebhookEvent[];

export interface WebhookBacklog {
  webhook: string;
  pending: number;
  dead: number;
  /** createdAt of the oldest pending row, or null. */
  oldestPendingAt: number | null;
}

export interface WebhookListQuery {
  state: WebhookState;
  webhook?: string;
  /** Only rows with a smaller id (paging back). */
  beforeId?: string;
  limit: number;
}

export interface WebhookStore {
  /** Writes events that go with no other change, in one transaction, in list order. */
  insertWebhookEvents(events: readonly NewWebhookEvent[]): Promise<void>;
  /**
   * Claims for `owner` up to `limit` pending rows of the named webhooks that
   * are due at `now`, unclaimed, and the first pending row of their
   * (webhook, key): at most one row per key is ever claimed, so a key's
   * rows go out one after another, oldest first. No two claims, whatever
   * nodes ask at once, return the same row. Oldest first.
   */
  claimWebhookEvents(owner: string, webhooks: readonly string[], now: number, limit: number): Promise<WebhookDelivery[]>;
  /** The receiver took it (`status` 2xx): delivered, claim cleared. */
  webhookDelivered(id: string, at: number, status: number): Promise<void>;
  /**
   * An attempt by `owner` failed: the row stays pending until `retryAt`
   * (claim cleared), or with `retryAt` null goes to the dead list. A row no
   * longer pending or no longer claimed by `owner` (it was fenced, and
   * another node has taken the row over) is left alone.
   */
  webhookFailed(id: string, owner: string, at: number, retryAt: number | null, status: number | null, error: string): Promise<void>;
  /** Hands back every claim of `owner` (shutdown). */
  releaseWebhookClaims(owner: string): Promise<void>;
  /**
   * Releases the claims of every owner neither in `liveOwners` nor a live
   * incarnation (LeaseStore: not fenced); returns how many.
   */
  releaseDeadWebhookClaims(liveOwners: readonly string[]): Promise<number>;
  /** Rows in one state, newest first. */
  listWebhookEvents(query: WebhookListQuery): Promise<WebhookDelivery[]>;
  /**
   * Moves dead rows (the ones listed, or all with 'all') back to pending,
   * due at `at`, with their attempts counted from 0; returns how many.
   */
  replayWebhookEvents(ids: readonly string[] | 'all', at: number): Promise<number>;
  /** Pending and dead rows per webhook. */
  webhookBacklog(): Promise<WebhookBacklog[]>;
  /**
   * One bounded step of retention: deletes up to `batch` delivered rows
   * finished before `deliveredBefore` and dead rows finished before
   * `deadBefore`; returns how many.
   */
  pruneWebhookEvents(deliveredBefore: number, deadBefore: number, batch: number): Promise<number>;
}
