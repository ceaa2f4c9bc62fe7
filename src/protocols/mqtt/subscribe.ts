/**
 * SUBSCRIBE and UNSUBSCRIBE: filters (plain, `$share/{group}/{filter}`,
 * `$user/{name}` mailboxes), the access checks, retained messages for a new
 * subscription, and keeping a persistent session's subscriptions in the store.
 */
import type { ISubscribePacket, IUnsubscribePacket } from 'mqtt-packet';
import { filterProblem } from '../../core/destination.js';
import { inAudience } from '../../core/message.js';
import type { MqttSubscriptionRecord } from '../../store/store.js';
import { MqttError, RC, SUBACK_V3_FAILURE } from './reason-codes.js';
import { MqttSubscription, type MqttClientState, type QoS } from './state.js';

export async function handleSubscribe(c: MqttClientState, p: ISubscribePacket): Promise<void> {
  const granted: number[] = [];
  // In a cluster, SUBACK only once every node routes the new filters here (a publish anywhere after it is not missed).
  const holds: { ready: Promise<void>; release(): void }[] = [];
  const subId = p.properties?.subscriptionIdentifier;
  const v5 = c.version === 5;
  if (v5 && p.subscriptions.some((s) => s.nl && s.topic.startsWith('$share/'))) {
    throw new MqttError(RC.protocolError, 'no local cannot be set on a shared subscription [MQTT-3.8.3-4]');
  }
  for (const s of p.subscriptions) {
    // Over the quota first: a packet of 100,000 filters must not cost 100,000 authorizations before it is refused.
    if (!c.subscriptions.has(s.topic) && c.subscriptions.size >= c.ctx.config.maxSubscriptionsPerConnection) {
      granted.push(v5 ? RC.quotaExceeded : SUBACK_V3_FAILURE);
      continue;
    }
    const parsed = parseFilter(s.topic);
    if (typeof parsed === 'string') {
      granted.push(v5 ? RC.topicFilterInvalid : SUBACK_V3_FAILURE);
      continue;
    }
    const { filter, share, mailbox } = parsed;
    const sysTopic = filter.startsWith('$SYS');
    const allowed =
      mailbox !== undefined ||
      ((await c.publishAcl.checkSubscribe(filter)) &&
        (!sysTopic || c.principal.role !== 'user') &&
        (await c.ctx.broker.authorizeTopic(c.principal, filter)) === undefined);
    if (!allowed) {
      granted.push(v5 ? RC.notAuthorized : SUBACK_V3_FAILURE);
      continue;
    }
    const hold = mailbox !== undefined ? c.ctx.broker.holdRoute('user', c.principal.userId) : c.ctx.broker.holdRoute('topic', filter);
    holds.push(hold);
    const existing = c.subscriptions.get(s.topic);
    if (existing) removeSubscription(c, existing);
    const qos = Math.min(s.qos, 2) as QoS;
    const sub = new MqttSubscription(c, filter, qos, s.nl ?? false, s.rap ?? false, mailbox, subId, share);
    attachSubscription(c, sub);
    granted.push(qos);
    // Retained messages: rh 0 always, 1 only for a new subscription, 2 never; never for shared subscriptions.
    const rh = s.rh ?? 0;
    if (mailbox === undefined && share === undefined && (rh === 0 || (rh === 1 && !existing))) {
      for (const r of c.shared.retained.matching(filter)) {
        if (!inAudience(r.msg.audience, c.principal)) continue;
        // A retained message stored before its topic became the server's (a chat thread created later) is never served.
        const topic = (r.msg.target as { topic: string }).topic;
        if (!topic.startsWith('$') && (await c.ctx.broker.publishRefusal(topic)) !== undefined) continue;
        c.deliver(sub, r.msg, { redelivered: false, settle: undefined }, true, r.qos);
      }
    }
  }
  // All filters' routes confirmed together (at most 2 s), before the SUBACK.
  await Promise.all(holds.map((h) => h.ready));
  for (const h of holds) h.release(); // the subscriptions hold the routes now
  if (c.closed) return;
  if (c.sessionKept) await c.shared.sessions.saveSubscriptions(c.clientId, subscriptionRecords(c));
  c.write(c.gen({ cmd: 'suback', messageId: p.messageId!, granted }));
}

export async function handleUnsubscribe(c: MqttClientState, p: IUnsubscribePacket): Promise<void> {
  const codes: number[] = [];
  for (const filter of p.unsubscriptions) {
    const sub = c.subscriptions.get(filter);
    if (sub) removeSubscription(c, sub);
    codes.push(sub ? RC.success : RC.noSubscriptionExisted);
  }
  if (c.sessionKept) await c.shared.sessions.saveSubscriptions(c.clientId, subscriptionRecords(c));
  c.write(c.gen(c.version === 5 ? { cmd: 'unsuback', messageId: p.messageId!, granted: codes } : { cmd: 'unsuback', messageId: p.messageId!, granted: [] }));
}

/** A resumed session's stored subscriptions, taken up again (filters that no longer parse are left out). */
export function restoreSubscriptions(c: MqttClientState, records: readonly MqttSubscriptionRecord[]): void {
  for (const r of records) {
    const parsed = parseFilter(r.filter);
    if (typeof parsed === 'string') continue;
    attachSubscription(c, new MqttSubscription(c, parsed.filter, r.qos as QoS, r.noLocal, r.retainAsPublished, parsed.mailbox, r.subscriptionId ?? undefined, parsed.share));
  }
}

export function attachSubscription(c: MqttClientState, sub: MqttSubscription): void {
  c.subscriptions.set(sub.key, sub);
  countPlain(c, sub, 1);
  const broker = c.ctx.broker;
  if (sub.mailbox !== undefined) broker.subscribeUser(c.principal.userId, sub.mailbox, sub);
  else if (sub.share !== undefined) broker.subscribeShared(sub.share, sub.filter, sub);
  else broker.subscribeTopic(sub.filter, sub);
}

export function removeSubscription(c: MqttClientState, sub: MqttSubscription): void {
  c.subscriptions.delete(sub.key);
  countPlain(c, sub, -1);
  const broker = c.ctx.broker;
  if (sub.mailbox !== undefined) broker.unsubscribeUser(c.principal.userId, sub.mailbox, sub);
  else if (sub.share !== undefined) broker.unsubscribeShared(sub.share, sub.filter, sub);
  else broker.unsubscribeTopic(sub.filter, sub);
}

/** Keeps count of plain topic subscriptions and wildcard ones among them (whether deliveries may overlap). */
function countPlain(c: MqttClientState, sub: MqttSubscription, delta: 1 | -1): void {
  if (sub.mailbox !== undefined || sub.share !== undefined) return;
  c.plainSubscriptions += delta;
  if (/[+#]/.test(sub.filter)) c.wildcardSubscriptions += delta;
  if (delta === 1) c.plainIndex.add(sub.filter, sub);
  else c.plainIndex.remove(sub.filter, sub);
}

/** Parses `$share/{group}/{filter}`, `$user/{name}` or a plain filter; a string is the reason it is not valid. */
export function parseFilter(raw: string): { filter: string; share?: string; mailbox?: string } | string {
  if (raw.startsWith('$share/')) {
    const rest = raw.slice(7);
    const slash = rest.indexOf('/');
    const group = slash > 0 ? rest.slice(0, slash) : '';
    const filter = rest.slice(slash + 1);
    if (!group || /[+#]/.test(group) || slash < 0 || !filter) return 'shared subscriptions look like $share/{group}/{filter}';
    return filterProblem(filter) ?? { filter, share: group };
  }
  if (raw.startsWith('$user/')) {
    const name = raw.slice(6);
    if (!name || /[+#]/.test(name)) return '$user/{name} takes one mailbox name without wildcards';
    return { filter: raw, mailbox: name };
  }
  return filterProblem(raw) ?? { filter: raw };
}

function subscriptionRecords(c: MqttClientState): MqttSubscriptionRecord[] {
  return [...c.subscriptions.values()].map((s) => ({
    filter: s.key,
    qos: s.qos,
    noLocal: s.noLocal,
    retainAsPublished: s.retainAsPublished,
    retainHandling: 0,
    subscriptionId: s.subscriptionId ?? null,
  }));
}
