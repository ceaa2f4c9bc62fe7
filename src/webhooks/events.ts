/**
 * The webhook events: their names, and what the parts of Herald that cause
 * them see of the outbox (`EventSink`). The contract for receivers (bodies,
 * headers, retries, ordering) is in docs/backend-integration.md.
 */
import type { NewWebhookEvent } from '../store/webhooks.js';

export const WEBHOOK_EVENTS = [
  'client.connected',
  'client.disconnected',
  'subscription.created',
  'subscription.removed',
  'message.published',
  'message.undelivered',
  'message.delivered',
  'message.read',
  'thread.created',
  'thread.message',
  'thread.closed',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

export function isWebhookEvent(name: string): name is WebhookEventType {
  return (WEBHOOK_EVENTS as readonly string[]).includes(name);
}

/**
 * The outbox as the code that causes events sees it. Nothing is built or
 * written for a type no webhook takes: callers ask `wants` first, and pass
 * the store no events at all when it says no.
 *
 * `key` orders events: those of one key (a session, a thread, a user) reach
 * each webhook in the order they were written, and one failing holds back
 * only the later ones of its key.
 */
export interface EventSink {
  /** Whether any webhook takes events of this type. */
  wants(type: WebhookEventType): boolean;
  /**
   * The outbox rows of one event, one per webhook that takes it (none for a
   * `message.published` whose topic no webhook's `topics` match). The caller
   * writes them in the transaction of the change the event describes.
   */
  rows(type: WebhookEventType, key: string, data: object, topic?: string): NewWebhookEvent[];
  /** An event that goes with no store change: written within a few milliseconds, batched with others. */
  emit(type: WebhookEventType, key: string, data: object, topic?: string): void;
}

/** Ordering keys, one per kind of thing events are about. */
export const orderKey = {
  session: (id: string): string => `session:${id}`,
  thread: (id: string): string => `thread:${id}`,
  user: (id: string): string => `user:${id}`,
  topic: (topic: string): string => `topic:${topic}`,
};
