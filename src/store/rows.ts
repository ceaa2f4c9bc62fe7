/**
 * Table rows as both databases return them, and their mappers to records:
 * written once for SQLite and PostgreSQL. The schemas agree column for
 * column; the two differences are absorbed here:
 * - a boolean column is INTEGER 0/1 in SQLite and BOOLEAN in PostgreSQL (`Flag`);
 * - ids and times are INTEGER in SQLite and BIGINT in PostgreSQL, which the
 *   PostgreSQL pool parses to numbers (every value Herald keeps fits in 2^53).
 *
 * Rows are type aliases, not interfaces, so that they satisfy pg's
 * `QueryResultRow` index signature.
 */
import type { AuditRecord } from './audit.js';
import type { AppRecord, AppTokenRecord, MqttQueuedRecord, MqttSessionRecord, MqttSubscriptionRecord, RetainedRecord } from './mqtt.js';
import type { DeliveryStatus, Receipt, StoredMessage } from './messages.js';
import type { QueuedMessage } from './queues.js';
import type { ThreadMember, ThreadMessageRecord, ThreadReceipt, ThreadRecord, ThreadRole, ThreadStatus } from './threads.js';
import type { Role, TokenRecord, UserRecord } from './users.js';
import type { WebhookDelivery, WebhookState } from './webhooks.js';

/** A boolean column: INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL. */
export type Flag = number | boolean;

/** A Flag as a boolean. */
export const flag = (v: Flag): boolean => (typeof v === 'boolean' ? v : v !== 0);

/** A row id given as a string, as a number; null for anything that is not a positive integer (so it cannot exist). */
export function rowId(id: string): number | null {
  return /^[1-9]\d{0,15}$/.test(id) ? Number(id) : null;
}

// ---- users and tokens ------------------------------------------------------

export type UserRow = {
  id: number;
  name: string;
  role: string;
  password_hash: string;
  disabled: Flag;
  created_at: number;
  tokens_valid_after: number;
};

export const toUser = (r: UserRow): UserRecord => ({
  id: String(r.id),
  name: r.name,
  role: r.role as Role,
  passwordHash: r.password_hash,
  disabled: flag(r.disabled),
  createdAt: r.created_at,
  tokensValidAfter: r.tokens_valid_after,
});

export type TokenRow = {
  hash: string;
  user_id: string;
  created_at: number;
  last_used_at: number;
  expires_at: number | null;
  idle_expiry: Flag;
};

export const toToken = (r: TokenRow): TokenRecord => ({
  hash: r.hash,
  userId: r.user_id,
  createdAt: r.created_at,
  lastUsedAt: r.last_used_at,
  expiresAt: r.expires_at,
  idleExpiry: flag(r.idle_expiry),
});

// ---- messages ----------------------------------------------------------------

export type MessageRow = {
  id: number;
  sender: string;
  title: string;
  content: string;
  type: string;
  created_at: number;
};

export const toMessage = (r: MessageRow): StoredMessage => ({
  id: String(r.id),
  sender: r.sender,
  title: r.title,
  content: r.content,
  type: r.type,
  createdAt: r.created_at,
});

export type ReceiptRow = {
  message_id: number;
  receiver: string;
  status: string;
  updated_at: number;
};

export const toReceipt = (r: ReceiptRow): Receipt => ({
  receiver: r.receiver,
  status: r.status as DeliveryStatus,
  updatedAt: r.updated_at,
});

// ---- threads -------------------------------------------------------------------

export type ThreadRow = {
  id: number;
  topic: string;
  status: string;
  created_by: string;
  created_at: number;
  last_activity_at: number;
  closed_at: number | null;
};

/** A thread row with its members (read separately, by user id). */
export const toThread = (r: ThreadRow, members: ThreadMember[]): ThreadRecord => ({
  id: String(r.id),
  topic: r.topic,
  status: r.status as ThreadStatus,
  createdBy: r.created_by,
  createdAt: r.created_at,
  lastActivityAt: r.last_activity_at,
  closedAt: r.closed_at,
  members,
});

export type ThreadMemberRow = {
  thread_id: number;
  user_id: string;
  role: string;
};

export const toThreadMember = (r: ThreadMemberRow): ThreadMember => ({ userId: r.user_id, role: r.role as ThreadRole });

export type ThreadMessageRow = {
  seq: number;
  thread_id: number;
  uid: string;
  type: string;
  author: string;
  body: string;
  created_at: number;
  recalled: Flag;
};

export const toThreadMessage = (r: ThreadMessageRow): ThreadMessageRecord => ({
  seq: String(r.seq),
  threadId: String(r.thread_id),
  uid: r.uid,
  type: r.type,
  author: r.author,
  body: r.body,
  createdAt: r.created_at,
  recalled: flag(r.recalled),
});

export type ThreadReceiptRow = {
  user_id: string;
  status: string;
  updated_at: number;
};

export const toThreadReceipt = (r: ThreadReceiptRow): ThreadReceipt => ({
  userId: r.user_id,
  status: r.status as 'DELIVERED' | 'READ',
  updatedAt: r.updated_at,
});

// ---- MQTT ------------------------------------------------------------------------

export type AppRow = {
  id: string;
  name: string;
  client_id: string;
  secret_hash: string;
  created_at: number;
};

export const toApp = (r: AppRow): AppRecord => ({
  id: r.id,
  name: r.name,
  clientId: r.client_id,
  secretHash: r.secret_hash,
  createdAt: r.created_at,
});

export type AppTokenRow = {
  hash: string;
  kind: string;
  app_id: string;
  username: string | null;
  cid: string | null;
  expires_at: number;
};

export const toAppToken = (r: AppTokenRow): AppTokenRecord => ({
  hash: r.hash,
  kind: r.kind as 'app' | 'user',
  appId: r.app_id,
  username: r.username,
  cid: r.cid,
  expiresAt: r.expires_at,
});

export type RetainedRow = {
  topic: string;
  body: Buffer;
  qos: number;
  properties: string;
  updated_at: number;
};

export const toRetained = (r: RetainedRow): RetainedRecord => ({
  topic: r.topic,
  body: r.body,
  qos: r.qos,
  properties: r.properties,
  updatedAt: r.updated_at,
});

export type MqttSessionRow = {
  client_id: string;
  owner: string;
  expiry_seconds: number;
  disconnected_at: number | null;
  /** JSON of MqttSubscriptionRecord[]. */
  subscriptions: string;
  /** JSON of number[]. */
  qos2_in: string;
  node: string | null;
};

export const toMqttSession = (r: MqttSessionRow): MqttSessionRecord => ({
  clientId: r.client_id,
  owner: r.owner,
  expirySeconds: r.expiry_seconds,
  disconnectedAt: r.disconnected_at,
  subscriptions: JSON.parse(r.subscriptions) as MqttSubscriptionRecord[],
  qos2In: JSON.parse(r.qos2_in) as number[],
  node: r.node,
});

/** The columns of an MQTT session row, in the order the save statements take them. */
export const mqttSessionParams = (m: MqttSessionRecord): [string, string, number, number | null, string, string, string | null] => [
  m.clientId,
  m.owner,
  m.expirySeconds,
  m.disconnectedAt,
  JSON.stringify(m.subscriptions),
  JSON.stringify(m.qos2In),
  m.node,
];

/** Sessions by client id (an UPDATE … RETURNING gives them in no order). */
export const byClientId = (a: MqttSessionRecord, b: MqttSessionRecord): number => (a.clientId < b.clientId ? -1 : 1);

export type MqttQueuedRow = {
  id: number;
  client_id: string;
  topic: string;
  body: Buffer;
  qos: number;
  properties: string;
  created_at: number;
  packet_id: number | null;
  released: Flag;
};

export const toMqttQueued = (r: MqttQueuedRow): MqttQueuedRecord => ({
  id: String(r.id),
  clientId: r.client_id,
  topic: r.topic,
  body: r.body,
  qos: r.qos,
  properties: r.properties,
  createdAt: r.created_at,
  packetId: r.packet_id,
  released: flag(r.released),
});

// ---- queues ------------------------------------------------------------------------

export type QueueRow = {
  id: number;
  queue: string;
  body: Buffer;
  content_type: string | null;
  /** JSON of [name, value][]. */
  headers: string;
  created_at: number;
  redelivered: Flag;
};

export const toQueued = (r: QueueRow): QueuedMessage => ({
  id: String(r.id),
  queue: r.queue,
  body: r.body,
  contentType: r.content_type,
  headers: JSON.parse(r.headers) as [string, string][],
  createdAt: r.created_at,
  redelivered: flag(r.redelivered),
});

/** Queue messages oldest first (an UPDATE … RETURNING gives them in no order). */
export const byQueueOrder = (a: QueuedMessage, b: QueuedMessage): number => Number(a.id) - Number(b.id);

// ---- webhook outbox ----------------------------------------------------------------

export type WebhookRow = {
  id: number;
  event_id: string;
  webhook: string;
  type: string;
  order_key: string;
  body: string;
  created_at: number;
  state: string;
  attempts: number;
  due_at: number;
  claimed_by: string | null;
  last_status: number | null;
  last_error: string | null;
  finished_at: number | null;
};

export const toWebhookDelivery = (r: WebhookRow): WebhookDelivery => ({
  id: String(r.id),
  eventId: r.event_id,
  webhook: r.webhook,
  type: r.type,
  orderKey: r.order_key,
  body: r.body,
  createdAt: r.created_at,
  state: r.state as WebhookState,
  attempts: r.attempts,
  dueAt: r.due_at,
  claimedBy: r.claimed_by,
  lastStatus: r.last_status,
  lastError: r.last_error,
  finishedAt: r.finished_at,
});
// ---- audit log ---------------------------------------------------------------

export type AuditRow = {
  id: number;
  at: number;
  actor_id: string;
  actor_name: string;
  action: string;
  target: string;
  detail: string;
  address: string;
  node: string;
};

export const toAudit = (r: AuditRow): AuditRecord => ({
  id: String(r.id),
  at: r.at,
  actorId: r.actor_id,
  actorName: r.actor_name,
  action: r.action,
  target: r.target,
  detail: r.detail,
  address: r.address,
  node: r.node,
});

/** A LIKE pattern matching `text` anywhere, taking `%`, `_` and `\` in it literally (for `LIKE ? ESCAPE '\'`). */
export const containsPattern = (text: string): string => '%' + text.replace(/[\\%_]/g, (c) => '\\' + c) + '%';
