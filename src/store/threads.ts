/**
 * Chat threads: a topic with members, a persistent history in seq order,
 * recalls and per-member receipts.
 * Implemented by sqlite/threads.ts and postgres/threads.ts.
 *
 * Changes take the webhook events that describe them (../webhooks.ts),
 * written in the same transaction, and only when the change happened.
 */
import type { EventsOf, NewWebhookEvent } from './webhooks.js';

export type ThreadRole = 'visitor' | 'agent';
export type ThreadStatus = 'OPEN' | 'CLOSED';

export interface ThreadMember {
  userId: string;
  role: ThreadRole;
}

/** A chat thread: a topic with members and persistent history. */
export interface ThreadRecord {
  id: string;
  /** Canonical topic key (`org/1/visitor/7`); STOMP clients use `/topic/org.1.visitor.7`. */
  topic: string;
  status: ThreadStatus;
  createdBy: string;
  createdAt: number;
  lastActivityAt: number;
  closedAt: number | null;
  /** By user id. */
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

export interface ThreadListQuery {
  /** Only the threads this user is a member of; also counts their unread messages. */
  member?: string;
  status?: ThreadStatus;
  limit: number;
}

export interface ThreadHistoryQuery {
  afterSeq?: string;
  beforeSeq?: string;
  /** createdAt > sinceTime (ms). */
  sinceTime?: number;
  limit: number;
}

/** A member's receipt for one thread message. */
export interface ThreadReceipt {
  userId: string;
  status: 'DELIVERED' | 'READ';
  updatedAt: number;
}

export interface ThreadStore {
  /** Creates a thread with its members (and `events` built from it); DuplicateError if the topic has one. */
  createThread(topic: string, createdBy: string, createdAt: number, members: ThreadMember[], events?: EventsOf<ThreadRecord>): Promise<ThreadRecord>;
  /** The thread of a topic, or null. */
  getThread(topic: string): Promise<ThreadRecord | null>;
  /** Adds a member or changes its role (an agent taking over a transfer). */
  addThreadMember(threadId: string, member: ThreadMember): Promise<void>;
  /** Threads, newest activity first; `member` limits to a user's threads. */
  listThreads(opts: ThreadListQuery): Promise<ThreadSummary[]>;
  /**
   * Sets a thread's status (closing records `closedAt`, opening clears it)
   * and marks activity, with `events`; false (and no events) if it already
   * had that status or does not exist.
   */
  setThreadStatus(threadId: string, status: ThreadStatus, at: number, events?: readonly NewWebhookEvent[]): Promise<boolean>;
  /** OPEN threads with no activity since `before`. */
  idleThreads(before: number, limit: number): Promise<ThreadRecord[]>;
  /**
   * Stores a thread message unless the thread already has one with this uid
   * (then returns that one with `duplicate: true`, and writes no events).
   * Also marks thread activity. The events go after the thread's row is
   * locked, so on PostgreSQL a thread's events are in the order of its messages.
   */
  addThreadMessage(message: NewThreadMessage, events?: EventsOf<ThreadMessageRecord>): Promise<{ record: ThreadMessageRecord; duplicate: boolean }>;
  /** The message of a thread with this uid, or null. */
  getThreadMessage(threadId: string, uid: string): Promise<ThreadMessageRecord | null>;
  /** Marks a message recalled; false if there is none or it already was. */
  markRecalled(threadId: string, uid: string): Promise<boolean>;
  /** History in seq order: after `afterSeq`, before `beforeSeq`, or from `sinceTime` (createdAt >). Newest `limit` when only `beforeSeq` or nothing is given. */
  threadHistory(threadId: string, opts: ThreadHistoryQuery): Promise<ThreadMessageRecord[]>;
  /** Moves a member's receipt for a message forward (DELIVERED → READ); false if not moved. */
  setThreadReceipt(threadId: string, uid: string, userId: string, status: 'DELIVERED' | 'READ', at: number): Promise<boolean>;
  /** Receipts of one message, by member. */
  threadReceipts(threadId: string, uid: string): Promise<ThreadReceipt[]>;
}
