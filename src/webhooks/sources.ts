/**
 * The events that go with no store change, from where they happen: sessions
 * opening and closing (the session registry), subscriptions, topic
 * publishes and user-mailbox messages nobody was there for (the broker).
 * Each watcher is installed only for the events some webhook takes, so a
 * node whose webhooks do not take `message.published` adds nothing to the
 * publish path.
 */
import type { BrokerWatcher, SubscriptionTarget } from '../core/broker.js';
import type { Consumer } from '../core/consumer.js';
import type { CoreMessage } from '../core/message.js';
import type { Presence } from '../core/presence.js';
import type { Session, SessionRegistry } from '../core/session.js';
import type { Logger } from '../log.js';
import type { UserStore } from '../store/users.js';
import { orderKey, type EventSink } from './events.js';
import { logRejection } from '../core/background.js';

/** A client as the client.* events describe it. */
function clientData(s: Session, node: string): object {
  return {
    sessionId: s.id,
    node,
    protocol: s.protocol,
    userId: s.principal.userId,
    user: s.principal.name,
    role: s.principal.role,
    remoteAddress: s.remoteAddress,
    device: s.device,
    connectedAt: new Date(s.connectedAt).toISOString(),
  };
}

export function watchSessions(sessions: SessionRegistry, sink: EventSink, node: string): void {
  const connected = sink.wants('client.connected');
  const disconnected = sink.wants('client.disconnected');
  if (!connected && !disconnected) return;
  sessions.observe({
    added: (s) => {
      if (connected) sink.emit('client.connected', orderKey.session(s.id), clientData(s, node));
    },
    removed: (s, reason) => {
      if (disconnected) sink.emit('client.disconnected', orderKey.session(s.id), { ...clientData(s, node), reason });
    },
  });
}

/** A message's payload as JSON can carry it: UTF-8 text as is, anything else in base64. */
function payloadOf(msg: CoreMessage): { payload: string; encoding: 'utf8' | 'base64' } {
  return msg.textBody ? { payload: msg.body.toString('utf8'), encoding: 'utf8' } : { payload: msg.body.toString('base64'), encoding: 'base64' };
}

const targetKey = (t: SubscriptionTarget): string =>
  t.kind === 'topic' ? `t\u0000${t.filter}` : t.kind === 'shared' ? `s\u0000${t.group}\u0000${t.filter}` : t.kind === 'queue' ? `q\u0000${t.name}` : `u\u0000${t.userId}\u0000${t.name}`;

export interface BrokerSources {
  sessions: SessionRegistry;
  presence: Presence;
  users: Pick<UserStore, 'getUserById'>;
  log: Logger;
}

/** The broker's part: subscriptions, topic publishes, and user-mailbox messages for a user with no session anywhere. */
export function brokerWatcher(sink: EventSink, parts: BrokerSources): BrokerWatcher | undefined {
  const w: BrokerWatcher = {};
  const { sessions } = parts;
  const publisher = (msg: CoreMessage): object | null => {
    const s = msg.publisherSession === undefined ? undefined : sessions.get(msg.publisherSession);
    if (s) return { sessionId: s.id, userId: s.principal.userId, user: s.principal.name };
    return msg.publisherSession === undefined ? null : { sessionId: msg.publisherSession };
  };

  if (sink.wants('subscription.created') || sink.wants('subscription.removed')) {
    // What each consumer holds, so that a cleanup's unsubscribe of something never subscribed says nothing.
    const held = new WeakMap<Consumer, Set<string>>();
    const data = (c: Consumer, t: SubscriptionTarget): object => ({ sessionId: c.sessionId, userId: c.principal.userId, user: c.principal.name, subscription: t });
    w.subscribed = (c, t) => {
      let set = held.get(c);
      if (!set) held.set(c, (set = new Set()));
      const k = targetKey(t);
      if (set.has(k)) return;
      set.add(k);
      if (sink.wants('subscription.created')) sink.emit('subscription.created', orderKey.session(c.sessionId), data(c, t));
    };
    w.unsubscribed = (c, t) => {
      if (!held.get(c)?.delete(targetKey(t))) return;
      if (sink.wants('subscription.removed')) sink.emit('subscription.removed', orderKey.session(c.sessionId), data(c, t));
    };
  }

  if (sink.wants('message.published')) {
    w.publishedTopic = (msg) => {
      // Messages for a closed audience (chat threads: thread.message tells of those) are not reported here.
      if (msg.audience !== undefined || msg.target.kind !== 'topic') return;
      const topic = msg.target.topic;
      const key = msg.publisherSession === undefined ? orderKey.topic(topic) : orderKey.session(msg.publisherSession);
      sink.emit(
        'message.published',
        key,
        { topic, ...payloadOf(msg), contentType: msg.contentType ?? null, qos: msg.qos, retain: msg.retain, publisher: publisher(msg) },
        topic,
      );
    };
  }

  if (sink.wants('message.undelivered')) {
    const online = onlineUsers(parts.presence);
    w.publishedUser = (msg, localDeliveries) => {
      // Stored messages (the message service) write their own event with the message; delivered ones need none.
      if (localDeliveries > 0 || msg.recordId !== undefined || msg.target.kind !== 'user') return;
      const { userId, name } = msg.target;
      if (sessions.ofUser(userId).size > 0) return;
      void (async () => {
        if ((await online()).has(userId)) return;
        const user = await parts.users.getUserById(userId).catch(() => null);
        sink.emit('message.undelivered', orderKey.user(userId), {
          source: 'user-queue',
          receiver: userId,
          receiverName: user?.name ?? null,
          mailbox: name,
          ...payloadOf(msg),
          contentType: msg.contentType ?? null,
          publisher: publisher(msg),
        });
      })().catch(logRejection(parts.log, 'reporting an undelivered user message'));
    };
  }

  return Object.keys(w).length > 0 ? w : undefined;
}

/** Who is online anywhere; callers that ask while a read is under way share it. */
function onlineUsers(presence: Presence): () => Promise<Set<string>> {
  let reading: Promise<Set<string>> | undefined;
  return () =>
    (reading ??= presence
      .onlineUsers()
      .then((users) => new Set(users))
      .finally(() => (reading = undefined)));
}
