/**
 * SUBSCRIBE, UNSUBSCRIBE, ACK and NACK: subscriptions come and go, and
 * acknowledgements reopen their windows (and, past the connection's byte
 * budget, every subscription's).
 */
import type { Outcome } from '../../core/broker.js';
import { parseDestination } from '../../core/destination.js';
import type { HeldQueue } from '../../core/delivery-window.js';
import { isSelf } from '../../core/mailbox.js';
import type { Target } from '../../core/message.js';
import { header, type StompFrame } from './codec.js';
import { StompError } from './errors.js';
import type { StompState } from './state.js';
import { StompSubscription, type Held } from './subscription.js';

export async function onSubscribe(c: StompState, frame: StompFrame): Promise<void> {
  const dest = header(frame, 'destination');
  if (!dest) throw new StompError('SUBSCRIBE needs a destination header');
  const id = header(frame, 'id') ?? (c.version === '1.0' ? dest : undefined);
  if (id === undefined) throw new StompError('SUBSCRIBE needs an id header', 'STOMP 1.1 and 1.2 subscriptions carry a unique id');
  if (c.subscriptions.has(id)) throw new StompError(`subscription id "${id}" is already in use on this connection`);
  if (c.subscriptions.size >= c.limits.maxSubscriptions) {
    throw new StompError('too many subscriptions', `this connection already has ${c.limits.maxSubscriptions} (maxSubscriptionsPerConnection)`);
  }
  const ack = header(frame, 'ack') ?? 'auto';
  if (ack !== 'auto' && ack !== 'client' && ack !== 'client-individual') {
    throw new StompError(`invalid ack mode "${ack}"`, 'ack is auto, client or client-individual');
  }
  const parsed = parseDestination(dest);
  if (typeof parsed === 'string') throw new StompError('invalid destination', parsed);
  let target: Target;
  switch (parsed.kind) {
    case 'topic': {
      let may = c.publishAcl.checkSubscribe(parsed.topic);
      if (may instanceof Promise) may = await may;
      if (!may) {
        throw new StompError('not allowed', `the access rules do not let "${c.principal.name}" subscribe to ${dest}`, null);
      }
      const refusal = await c.broker.authorizeTopic(c.principal, parsed.topic);
      if (refusal) throw new StompError('not allowed', refusal);
      target = { kind: 'topic', topic: parsed.topic };
      break;
    }
    case 'queue':
      target = { kind: 'queue', name: parsed.name };
      break;
    case 'user':
      if (parsed.who !== null && !isSelf(c.principal, parsed.who)) {
        throw new StompError('not allowed', `${dest} is another user's queue; subscribe to /user/queue/${parsed.name} for your own`);
      }
      target = { kind: 'user', userId: c.principal.userId, name: parsed.name };
      break;
    case 'server':
      throw new StompError('cannot subscribe', `${dest} is handled by the server: SEND to it, do not SUBSCRIBE`);
  }
  // In a cluster, RECEIPT only once every node routes the destination here: a SEND anywhere after it is not missed.
  const hold = target.kind === 'topic' ? c.broker.holdRoute('topic', target.topic) : target.kind === 'user' ? c.broker.holdRoute('user', target.userId) : undefined;
  if (hold) await hold.ready;
  if (c.closed) return hold?.release();
  const sub = new StompSubscription(c, id, dest, target, ack);
  c.subscriptions.set(id, sub);
  // RECEIPT before any message, so a client waiting for it sees the subscription live.
  c.receipt(frame);
  switch (target.kind) {
    case 'topic': {
      // `since:<last message id or time>` recovers what a reconnecting client missed (chat threads).
      const since = header(frame, 'since');
      c.broker.subscribeTopic(target.topic, sub, since ? { principal: c.principal, position: since } : undefined);
      break;
    }
    case 'queue':
      c.broker.subscribeQueue(target.name, sub);
      break;
    case 'user':
      c.broker.subscribeUser(target.userId, target.name, sub);
      break;
  }
  hold?.release(); // the subscription holds the route now
}

/**
 * The byte budget reopened: held messages of every subscription go out,
 * oldest first across them all, while there is room (a subscription whose
 * own window is full is passed over), and queues are told to look again.
 */
function drainAll(c: StompState): void {
  const byQueue = new Map<HeldQueue<Held>, StompSubscription>();
  for (const sub of c.subscriptions.values()) if (sub.held.length > 0) byQueue.set(sub.held, sub);
  c.window.drain(
    byQueue.keys(),
    (q) => byQueue.get(q)!.mayDrain(),
    (h, q) => byQueue.get(q)!.write(h.msg, h.delivery),
  );
  for (const sub of c.subscriptions.values()) sub.tellQueue();
}

/** The subscription ends: the broker forgets it, and what it held or had in flight goes back. */
export function removeSubscription(c: StompState, sub: StompSubscription): void {
  c.subscriptions.delete(sub.id);
  const t = sub.target;
  if (t.kind === 'topic') c.broker.unsubscribeTopic(t.topic, sub);
  else if (t.kind === 'queue') c.broker.unsubscribeQueue(t.name, sub);
  else c.broker.unsubscribeUser(t.userId, t.name, sub);
  sub.release();
}

export function onUnsubscribe(c: StompState, frame: StompFrame): void {
  const id = header(frame, 'id') ?? (c.version === '1.0' ? header(frame, 'destination') : undefined);
  if (id === undefined) throw new StompError('UNSUBSCRIBE needs an id header');
  const sub = c.subscriptions.get(id);
  if (!sub) throw new StompError(`no subscription with id "${id}"`);
  const budgetWasFull = !c.window.mayFly();
  removeSubscription(c, sub);
  // What it had in flight no longer counts: the others may send again.
  if (budgetWasFull && c.window.mayFly()) drainAll(c);
  c.receipt(frame);
}

export function onAck(c: StompState, frame: StompFrame): void {
  const outcome: Outcome = frame.command === 'ACK' ? 'ack' : 'nack';
  const budgetWasFull = !c.window.mayFly();
  const settled: StompSubscription[] = [];
  if (c.version === '1.2') {
    const id = header(frame, 'id');
    if (id === undefined) throw new StompError(`${frame.command} needs an id header`, 'use the value of the ack header of the MESSAGE');
    for (const sub of c.subscriptions.values()) if (sub.settle(id, outcome)) settled.push(sub);
    if (settled.length === 0) throw new StompError(`${frame.command} for unknown id "${id}"`, 'no unacknowledged message has that ack id on this connection');
  } else {
    const mid = header(frame, 'message-id');
    if (mid === undefined) throw new StompError(`${frame.command} needs a message-id header`);
    const subId = header(frame, 'subscription');
    const subs = subId !== undefined ? [c.subscriptions.get(subId)] : [...c.subscriptions.values()];
    for (const sub of subs) if (sub?.settle(`${mid}:${sub.id}`, outcome)) settled.push(sub);
    if (settled.length === 0) throw new StompError(`${frame.command} for unknown message-id "${mid}"`, 'no unacknowledged message has that id on this connection');
  }
  // The byte budget is the connection's: when this ACK reopens it, every subscription may send again.
  if (budgetWasFull && c.window.mayFly()) drainAll(c);
  else for (const sub of settled) sub.drainHeld();
  c.receipt(frame);
}
