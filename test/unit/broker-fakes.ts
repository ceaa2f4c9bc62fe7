/**
 * Stand-ins for what the broker's engines talk to: consumers that record
 * what they get and say when they have room, a cluster link that records
 * what it hears, and a logger whose lines a test can read.
 */
import { pino, type Logger } from 'pino';
import type { Principal } from '../../src/core/auth.js';
import type { ClusterLink } from '../../src/core/cluster-link.js';
import type { Consumer, Delivery, Outcome } from '../../src/core/consumer.js';
import { createMessage, type CoreMessage } from '../../src/core/message.js';

export function principalOf(userId: string, role: Principal['role'] = 'user'): Principal {
  return { userId, name: userId, role, credential: { kind: 'password' } };
}

export interface Received {
  msg: CoreMessage;
  delivery: Delivery;
}

/**
 * A consumer with a window: it has capacity while fewer than `window` of its
 * deliveries are unsettled (settled through `settle`, `ack`, …).
 */
export class FakeConsumer implements Consumer {
  readonly received: Received[] = [];
  /** Deliveries not settled yet, oldest first. */
  readonly unsettled: Received[] = [];
  window = Infinity;
  /** Throws from `deliver` when set (a broken adapter). */
  failing = false;

  constructor(
    readonly sessionId: string,
    readonly principal: Principal = principalOf(sessionId),
  ) {}

  deliver(msg: CoreMessage, delivery: Delivery): void {
    if (this.failing) throw new Error(`${this.sessionId} is broken`);
    const r = { msg, delivery };
    this.received.push(r);
    if (delivery.settle) this.unsettled.push(r);
  }

  hasCapacity(): boolean {
    return this.unsettled.length < this.window;
  }

  /** Bodies received, as text, in order. */
  bodies(): string[] {
    return this.received.map((r) => r.msg.body.toString());
  }

  /** Settles the oldest unsettled delivery (or the one carrying `body`). */
  settle(outcome: Outcome, body?: string): Received {
    const i = body === undefined ? 0 : this.unsettled.findIndex((r) => r.msg.body.toString() === body);
    const r = this.unsettled[i];
    if (!r) throw new Error(`${this.sessionId} has no unsettled delivery${body === undefined ? '' : ` of "${body}"`}`);
    this.unsettled.splice(i, 1);
    r.delivery.settle!(outcome);
    return r;
  }

  ack(body?: string): Received {
    return this.settle('ack', body);
  }

  nack(body?: string): Received {
    return this.settle('nack', body);
  }

  /** What an adapter does when its subscription ends: everything unsettled goes back. */
  requeueAll(): void {
    while (this.unsettled.length > 0) this.settle('requeue');
  }
}

export function topicMessage(topic: string, body: string, extra: { audience?: Set<string>; recordId?: string; publisherSession?: string } = {}): CoreMessage {
  return createMessage({ target: { kind: 'topic', topic }, body: Buffer.from(body), ...extra });
}

export function userMessage(userId: string, name: string, body: string, recordId?: string): CoreMessage {
  return createMessage({ target: { kind: 'user', userId, name }, body: Buffer.from(body), recordId });
}

export function queueMessage(name: string, body: string): CoreMessage {
  return createMessage({ target: { kind: 'queue', name }, body: Buffer.from(body), headers: [['h', body]], contentType: 'text/plain' });
}

/** A cluster link that records what the engines tell it. */
export class FakeLink implements ClusterLink {
  readonly nodeId: string;
  readonly owner: string;
  leased = true;
  readonly interests: string[] = [];
  readonly shared: string[] = [];
  readonly forwarded: CoreMessage[] = [];
  readonly pokes: string[] = [];
  /** Whether this node serves a shared group for a message. */
  pick: (group: string, filter: string, msg: CoreMessage) => boolean = () => true;

  constructor(nodeId = 'node-a') {
    this.nodeId = nodeId;
    this.owner = `${nodeId}#1`;
  }

  interest(kind: 'topic' | 'user' | 'queue', key: string, on: boolean): void {
    this.interests.push(`${on ? '+' : '-'}${kind}:${key}`);
  }
  forward(msg: CoreMessage): void {
    this.forwarded.push(msg);
  }
  async routeReady(): Promise<void> {}
  pokeQueue(name: string): void {
    this.pokes.push(name);
  }
  sharedInterest(group: string, filter: string, on: boolean): void {
    this.shared.push(`${on ? '+' : '-'}${group}:${filter}`);
  }
  sharedPick(group: string, filter: string, msg: CoreMessage): boolean {
    return this.pick(group, filter, msg);
  }
}

/** A logger whose records (parsed) a test can read. */
export function recordingLog(): { log: Logger; records: { level: number; msg: string }[] } {
  const records: { level: number; msg: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as { level: number; msg: string }) });
  return { log, records };
}

/** Lets pending promise callbacks and `setImmediate` work run. */
export async function settleDown(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Waits until `check` holds (store round trips, `setImmediate` redispatches); fails after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 2000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
