/**
 * The Store: everything Herald keeps on disk. Two implementations share one
 * contract and one test suite (test/helpers/store-suite.ts): SQLite (embedded,
 * default) and PostgreSQL (cluster mode).
 *
 * Every method that returns resolves only after the write is durable, so a
 * caller may acknowledge a client as soon as the promise settles.
 * Identifiers are strings at this boundary whatever the database uses.
 */

export const ROLES = ['user', 'admin', 'service'] as const;
export type Role = (typeof ROLES)[number];

export interface UserRecord {
  id: string;
  name: string;
  role: Role;
  passwordHash: string;
  disabled: boolean;
  createdAt: number;
  /** Revocation mark (ms): JWTs of this user issued (iat) before it are refused. 0 when never revoked. */
  tokensValidAfter: number;
}

export interface NewUser {
  name: string;
  role: Role;
  passwordHash: string;
  createdAt: number;
}

export interface UserPatch {
  role?: Role;
  passwordHash?: string;
  disabled?: boolean;
  tokensValidAfter?: number;
}

export interface TokenRecord {
  /** SHA-256 of the token text, hex. The text itself is never stored. */
  hash: string;
  userId: string;
  createdAt: number;
  lastUsedAt: number;
  /** Absolute expiry (ms since epoch), or null for none. */
  expiresAt: number | null;
  /** True when the token dies after the configured idle time (login tokens). */
  idleExpiry: boolean;
}

export const DELIVERY_STATUSES = ['PENDING', 'DELIVERED', 'READ'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface NewMessage {
  sender: string;
  title: string;
  content: string;
  type: string;
  createdAt: number;
  /** User ids; one delivery row each, PENDING. */
  receivers: readonly string[];
}

export interface StoredMessage {
  id: string;
  sender: string;
  title: string;
  content: string;
  type: string;
  createdAt: number;
}

export interface Receipt {
  receiver: string;
  status: DeliveryStatus;
  updatedAt: number;
}

export interface MessageRecord extends StoredMessage {
  receivers: Receipt[];
}

export interface MessageQuery {
  /** 1-based. */
  page: number;
  size: number;
  status?: DeliveryStatus;
  sender?: string;
  receiver?: string;
  type?: string;
  /** createdAt >= from (ms). */
  from?: number;
  /** createdAt <= to (ms). */
  to?: number;
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  size: number;
}

/** A message kept on a point-to-point `/queue/` until a consumer acknowledges it. */
export interface NewQueuedMessage {
  queue: string;
  body: Buffer;
  contentType: string | null;
  headers: [string, string][];
  createdAt: number;
}

export interface QueuedMessage extends NewQueuedMessage {
  /** Increases with insertion order within the store. */
  id: string;
  /** It was handed to a consumer before, which did not acknowledge it. */
  redelivered: boolean;
}

export type ThreadRole = 'visitor' | 'agent';
export type ThreadStatus = 'OPEN' | 'CLOSED';

export interface ThreadMember {
  userId: string;
  role: ThreadRole;
}

/** A chat thread (seed 003): a topic with members and persistent history. */
export interface ThreadRecord {
  id: string;
  /** Canonical topic key (`org/1/visitor/7`); STOMP clients use `/topic/org.1.visitor.7`. */
  topic: string;
  status: ThreadStatus;
  createdBy: string;
  createdAt: number;
  lastActivityAt: number;
  closedAt: number | null;
  members: ThreadMember[];
}

export interface NewThreadMessage {
  threadId: string;
  /** The client's idempotency key. */
  uid: string;
  type: string;
  /** User id of the sender (from the connection, not from the message). */
  author: string;
  /** The message as broadcast, JSON text. */
  body: string;
  createdAt: number;
}

export interface ThreadMessageRecord extends NewThreadMessage {
  /** Position in the thread's history; increases with every stored message. */
  seq: string;
  recalled: boolean;
}

export interface ThreadSummary {
  thread: ThreadRecord;
  lastMessage: ThreadMessageRecord | null;
  /** Messages by others that this user has no READ receipt for. */
  unread: number;
}

/** An application of seed 004's hosted-MQTT model: it gets app and user tokens with its client id and secret. */
export interface AppRecord {
  id: string;
  name: string;
  clientId: string;
  secretHash: string;
  createdAt: number;
}

/** An app token (kind `app`) or a user token issued by an app (kind `user`, bound to a user name and client id). */
export interface AppTokenRecord {
  hash: string;
  kind: 'app' | 'user';
  appId: string;
  username: string | null;
  cid: string | null;
  expiresAt: number;
}

/** A retained MQTT message: the last one published with retain on its topic. */
export interface RetainedRecord {
  topic: string;
  body: Buffer;
  qos: number;
  /** v5 properties and the content type, as JSON. */
  properties: string;
  updatedAt: number;
}

export interface MqttSubscriptionRecord {
  filter: string;
  qos: number;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: number;
  subscriptionId: number | null;
}

/** A persistent MQTT session (clean session 0, or a v5 session expiry), kept across disconnects and restarts. */
export interface MqttSessionRecord {
  clientId: string;
  /** The owner, as JSON of {userId, name, role}: only the same user may resume the session. */
  owner: string;
  expirySeconds: number;
  /** When the client went away; null while connected. */
  disconnectedAt: number | null;
  subscriptions: MqttSubscriptionRecord[];
  /** QoS 2 packet ids received from the client and not yet released (PUBREC sent, PUBREL awaited). */
  qos2In: number[];
  /** The node that holds the session (cluster mode); another node takes it over when the client lands there. */
  node: string | null;
}

/** A QoS 1/2 message waiting for a persistent session's client. */
export interface MqttQueuedRecord {
  id: string;
  clientId: string;
  topic: string;
  body: Buffer;
  qos: number;
  /** contentType, userProperties, subscriptionIdentifier: JSON. */
  properties: string;
  createdAt: number;
  /** The packet id it was last sent with, if it was sent. */
  packetId: number | null;
  /** QoS 2: the client sent PUBREC, so only PUBREL remains to be sent. */
  released: boolean;
}

/** A row id given as a string, as a number; null for anything that is not a positive integer (so it cannot exist). */
export function rowId(id: string): number | null {
  return /^[1-9]\d{0,15}$/.test(id) ? Number(id) : null;
}

/** Raised when a unique value (a user name) is already taken. */
export class DuplicateError extends Error {
  override name = 'DuplicateError';
}

/**
 * The store cannot be reached (PostgreSQL down, connection lost). The failed
 * call's writes were rolled back (only a connection lost during COMMIT itself
 * leaves that unknown, as with any database): callers tell their client to
 * try again later, and never acknowledge what they could not store.
 */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

/** SQLite result codes meaning "cannot write now" rather than a bug: full, I/O error, read-only, locked too long. */
const SQLITE_UNAVAILABLE = /^SQLITE_(FULL|IOERR|READONLY|BUSY|LOCKED|CANTOPEN)/;

/**
 * The StoreUnavailableError an error amounts to, or undefined when it is
 * something else (a bug, bad input). PostgresStore raises its own; SQLite's
 * (better-sqlite3 SqliteError with a result code) are recognised here.
 */
export function storeUnavailable(err: unknown): StoreUnavailableError | undefined {
  if (err instanceof StoreUnavailableError) return err;
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && SQLITE_UNAVAILABLE.test(code)) {
    const why = code === 'SQLITE_FULL' ? 'the SQLite database is full (sqliteMaxSizeMb or the disk)' : `SQLite cannot write (${code})`;
    return new StoreUnavailableError(`${why}: ${(err as Error).message}`, { cause: err });
  }
  return undefined;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** Cheap round trip, for /readyz. */
  ping(): Promise<void>;
  /** Flushes and releases the database. */
  close(): Promise<void>;

  createUser(user: NewUser): Promise<UserRecord>;
  getUserById(id: string): Promise<UserRecord | null>;
  getUserByName(name: string): Promise<UserRecord | null>;
  listUsers(): Promise<UserRecord[]>;
  countUsers(): Promise<number>;
  updateUser(id: string, patch: UserPatch): Promise<UserRecord | null>;

  insertToken(token: TokenRecord): Promise<void>;
  getToken(hash: string): Promise<TokenRecord | null>;
  touchToken(hash: string, lastUsedAt: number): Promise<void>;
  deleteToken(hash: string): Promise<boolean>;
  /** Deletes every token of a user; returns their hashes. */
  deleteTokensOfUser(userId: string): Promise<string[]>;
  /** Deletes idle-expiring tokens unused since `idleBefore` and tokens past their absolute expiry. */
  deleteDeadTokens(idleBefore: number, now: number): Promise<number>;

  /** Stores a message and its delivery rows in one transaction; returns the id. */
  insertMessage(message: NewMessage): Promise<string>;
  getMessage(id: string): Promise<MessageRecord | null>;
  /** A receiver's PENDING messages, oldest first. */
  pendingFor(receiver: string, limit: number): Promise<StoredMessage[]>;
  /**
   * Moves a delivery row forward (PENDING → DELIVERED → READ; never back).
   * Returns false when the row does not exist or is already at or past `status`.
   */
  setDeliveryStatus(messageId: string, receiver: string, status: DeliveryStatus, at: number): Promise<boolean>;
  /** Newest first. */
  queryMessages(query: MessageQuery): Promise<Page<MessageRecord>>;
  deleteMessage(id: string): Promise<boolean>;
  /**
   * Retention, one bounded step: deletes up to `batch` messages created before
   * `olderThan`, and for each receiver with more than `maxPerReceiver` delivery
   * rows, up to `batch` of its oldest rows (and a message once none of its rows
   * remain). Returns how much it removed; 0 means done for now.
   */
  pruneMessages(olderThan: number, maxPerReceiver: number, batch: number): Promise<number>;

  /** Creates a thread with its members; DuplicateError if the topic has one. */
  createThread(topic: string, createdBy: string, createdAt: number, members: ThreadMember[]): Promise<ThreadRecord>;
  getThread(topic: string): Promise<ThreadRecord | null>;
  /** Adds a member or changes its role (an agent taking over a transfer). */
  addThreadMember(threadId: string, member: ThreadMember): Promise<void>;
  /** Threads, newest activity first; `member` limits to a user's threads. */
  listThreads(opts: { member?: string; status?: ThreadStatus; limit: number }): Promise<ThreadSummary[]>;
  setThreadStatus(threadId: string, status: ThreadStatus, at: number): Promise<boolean>;
  /** OPEN threads with no activity since `before`. */
  idleThreads(before: number, limit: number): Promise<ThreadRecord[]>;
  /**
   * Stores a thread message unless the thread already has one with this uid
   * (then returns that one with `duplicate: true`). Also marks thread activity.
   */
  addThreadMessage(message: NewThreadMessage): Promise<{ record: ThreadMessageRecord; duplicate: boolean }>;
  getThreadMessage(threadId: string, uid: string): Promise<ThreadMessageRecord | null>;
  markRecalled(threadId: string, uid: string): Promise<boolean>;
  /** History in seq order: after `afterSeq`, before `beforeSeq`, or from `sinceTime` (createdAt >). Newest `limit` when only `beforeSeq` or nothing is given. */
  threadHistory(threadId: string, opts: { afterSeq?: string; beforeSeq?: string; sinceTime?: number; limit: number }): Promise<ThreadMessageRecord[]>;
  /** Moves a member's receipt for a message forward (DELIVERED → READ); false if not moved. */
  setThreadReceipt(threadId: string, uid: string, userId: string, status: 'DELIVERED' | 'READ', at: number): Promise<boolean>;
  /** Receipts of one message, by member. */
  threadReceipts(threadId: string, uid: string): Promise<{ userId: string; status: 'DELIVERED' | 'READ'; updatedAt: number }[]>;

  createApp(app: AppRecord): Promise<void>;
  getApp(id: string): Promise<AppRecord | null>;
  getAppByClientId(clientId: string): Promise<AppRecord | null>;
  listApps(): Promise<AppRecord[]>;
  insertAppToken(token: AppTokenRecord): Promise<void>;
  getAppToken(hash: string): Promise<AppTokenRecord | null>;
  /** Deletes app tokens past their expiry. */
  deleteExpiredAppTokens(now: number): Promise<number>;

  /** Sets (or with an empty body, clears) the retained message of a topic. */
  setRetained(record: RetainedRecord): Promise<void>;
  listRetained(): Promise<RetainedRecord[]>;

  /** Creates or replaces a persistent MQTT session with its subscriptions. */
  saveMqttSession(session: MqttSessionRecord): Promise<void>;
  deleteMqttSession(clientId: string): Promise<void>;
  listMqttSessions(): Promise<MqttSessionRecord[]>;
  getMqttSession(clientId: string): Promise<MqttSessionRecord | null>;
  /**
   * Makes `node` the holder of every session held by no node or by a node
   * not in `liveNodes` (stopped or dead); returns those sessions.
   */
  adoptMqttSessions(node: string, liveNodes: readonly string[]): Promise<MqttSessionRecord[]>;
  enqueueMqtt(message: Omit<MqttQueuedRecord, 'id'>): Promise<string>;
  /** Records the packet id a waiting message went out with, and whether its PUBREC came back. */
  setMqttQueuedState(id: string, packetId: number, released: boolean): Promise<void>;
  /** A session's waiting messages, oldest first. */
  loadMqttQueue(clientId: string, limit: number): Promise<MqttQueuedRecord[]>;
  deleteMqttQueued(id: string): Promise<void>;

  /** Keeps a queue message until `dequeue`; returns its id. With `claimedBy`, it is stored already claimed by that node. */
  enqueue(message: NewQueuedMessage, claimedBy?: string): Promise<string>;
  /**
   * Claims up to `limit` unclaimed messages of a queue for `owner` (a node),
   * oldest first. No two claims ever return the same message, whichever
   * nodes ask at the same time.
   */
  claimQueue(queue: string, owner: string, limit: number): Promise<QueuedMessage[]>;
  /** Hands claimed messages back (their consumer went away); any node may claim them again. `redelivered` marks them as delivered once already. */
  releaseQueued(ids: readonly string[], redelivered: boolean): Promise<void>;
  /** Releases every claim of an owner not in `liveOwners` (a stopped or dead node); returns the queues that got messages back. */
  releaseDeadClaims(liveOwners: readonly string[]): Promise<string[]>;
  /** Removes a consumed queue message. */
  dequeue(id: string): Promise<boolean>;
}
