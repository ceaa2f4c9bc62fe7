/**
 * PUBLISH from the client, and PUBREL (its QoS 2 release): topic aliases,
 * topic checks, the refusals (server-owned topics, the ACL), retained
 * messages, and the acknowledgement once what persistent sessions must get
 * is on disk.
 */
import type { IPublishPacket, IPubrelPacket } from 'mqtt-packet';
import { logRejection } from '../../core/background.js';
import { levelsProblem } from '../../core/destination.js';
import { createMessage, plainMessage, type CoreMessage, type Target } from '../../core/message.js';
import { mqttHeaders, payloadFormatOf } from './properties.js';
import { isFailure, MqttError, RC } from './reason-codes.js';
import { INBOUND_ALIASES, type MqttClientState } from './state.js';

/**
 * A PUBLISH from the client. Handled at once when nothing needs waiting for
 * (QoS 0, no ACL hook question, no retained write): a Promise only then.
 */
export function handlePublish(c: MqttClientState, p: IPublishPacket): void | Promise<void> {
  // mqtt-packet reads a packet id cut short as -1 (and its PUBACK would then lack the id); 0 is not an id [MQTT-2.2.1-3].
  if (p.qos > 0 && !(p.messageId! >= 1)) throw new MqttError(RC.malformedPacket, `a QoS ${p.qos} PUBLISH needs a packet identifier from 1 to 65535`, 'malformed');
  const topic = resolveTopic(c, p);
  // mqtt-packet and publish-codec decode invalid UTF-8 to U+FFFD; such a topic is malformed [MQTT-1.5.3-1].
  if (!topic || INVALID_TOPIC.test(topic)) {
    throw new MqttError(RC.topicNameInvalid, `topic name "${topic.slice(0, 100)}" is not valid for PUBLISH`);
  }
  const deep = levelsProblem(topic);
  if (deep) throw new MqttError(RC.topicNameInvalid, deep);
  const max = c.ctx.config.mqttMaxInflight;
  if (p.qos === 2 && c.qos2In.has(p.messageId!)) {
    // A repeated QoS 2 PUBLISH before PUBREL: acknowledged again, delivered once.
    return c.write(c.gen({ cmd: 'pubrec', messageId: p.messageId! }));
  }
  if (p.qos === 2 && c.version === 5 && c.qos2In.size >= max) {
    // [MQTT-3.3.4-9]: more unreleased QoS 2 messages than the Receive Maximum we announced.
    throw new MqttError(RC.receiveMaximumExceeded, `receive maximum exceeded: ${c.qos2In.size} QoS 2 messages await PUBREL (the limit is ${max})`);
  }
  c.ctx.metrics.messagesInOf[c.protocol].inc();
  if (topic.startsWith('$user/') && topic.length > 6) {
    c.ctx.broker.publishUser(messageOf(c, p, { kind: 'user', userId: c.principal.userId, name: topic.slice(6) }));
    return acknowledge(c, p, RC.success);
  }
  // Topics no client may write: $ topics [MQTT-4.7.2-1] and chat threads (the server writes them for their members).
  // A v3 client is not told (the message is simply not delivered, nor retained); a v5 client gets 0x87.
  const asked = c.ctx.broker.publishRefusal(topic);
  if (asked instanceof Promise) return asked.then((refusal) => (c.closed ? undefined : unlessRefused(c, p, topic, refusal)));
  return unlessRefused(c, p, topic, asked);
}

const INVALID_TOPIC = /[+#\u0000\uFFFD]/;

/** The message a PUBLISH carries (the fast shape when it has no v5 properties). */
function messageOf(c: MqttClientState, p: IPublishPacket, target: Target): CoreMessage {
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
  const props = p.properties;
  if (props === undefined) return plainMessage(target, payload, p.qos, p.retain, c.id);
  const expiry = props.messageExpiryInterval;
  return createMessage({
    target,
    body: payload,
    qos: p.qos,
    retain: p.retain,
    expiresAt: expiry !== undefined ? c.ctx.clock.now() + expiry * 1000 : undefined,
    replyTo: props.responseTopic,
    correlation: props.correlationData,
    contentType: props.contentType,
    ...payloadFormatOf(props),
    headers: mqttHeaders(props),
    publisherSession: c.id,
  });
}

function unlessRefused(c: MqttClientState, p: IPublishPacket, topic: string, refusal: string | undefined): void | Promise<void> {
  if (refusal !== undefined) {
    return acknowledge(c, p, RC.notAuthorized, topic.startsWith('$') ? `${topic.slice(0, 100)} is reserved for the server` : refusal);
  }
  const may = c.mayPublish(topic);
  if (may instanceof Promise) return may.then((allowed) => (c.closed ? undefined : publishIfAllowed(c, p, topic, allowed)));
  return publishIfAllowed(c, p, topic, may);
}

function publishIfAllowed(c: MqttClientState, p: IPublishPacket, topic: string, may: boolean): void | Promise<void> {
  if (!may) return acknowledge(c, p, RC.notAuthorized, `not allowed to publish to ${topic}`);
  const msg = messageOf(c, p, { kind: 'topic', topic });
  if (!p.retain) return route(c, p, msg);
  const full = c.shared.retained.refusal(topic, msg);
  // Past the retained total a v5 publisher is told and nothing happens; a 3.1.1 one cannot be told: delivered, not retained.
  if (full !== undefined && c.version === 5) return acknowledge(c, p, RC.quotaExceeded, full);
  if (full !== undefined) return route(c, p, msg);
  return c.shared.retained.set(topic, msg, p.qos, p.properties).then(() => route(c, p, msg));
}

function route(c: MqttClientState, p: IPublishPacket, msg: CoreMessage): void | Promise<void> {
  const failures = c.shared.sessions.failures;
  const n = c.ctx.broker.publishTopic(msg);
  if (p.qos === 0) return;
  // QoS 1/2: what persistent sessions must get is on disk before the acknowledgement; if it cannot be, there is none.
  return c.shared.sessions
    .flushSince(failures)
    .then(() => c.ctx.broker.committed(msg))
    .then(() => acknowledge(c, p, n === 0 ? RC.noMatchingSubscribers : RC.success));
}

/** The topic of a PUBLISH, through its v5 topic alias if it has one (setting or using it). */
function resolveTopic(c: MqttClientState, p: IPublishPacket): string {
  const alias = p.properties?.topicAlias;
  if (alias === undefined) return p.topic;
  if (alias < 1 || alias > INBOUND_ALIASES) throw new MqttError(RC.topicAliasInvalid, `topic alias ${alias} is outside 1..${INBOUND_ALIASES}`);
  if (p.topic) {
    c.aliasesIn.set(alias, p.topic);
    return p.topic;
  }
  const topic = c.aliasesIn.get(alias);
  if (!topic) throw new MqttError(RC.protocolError, `topic alias ${alias} is not set`);
  return topic;
}

/** PUBACK (QoS 1) or PUBREC (QoS 2) with the outcome; a QoS 2 message accepted is remembered until PUBREL. */
function acknowledge(c: MqttClientState, p: IPublishPacket, reasonCode?: number, reasonString?: string): void {
  if (p.qos === 0) return;
  const cmd = p.qos === 1 ? 'puback' : 'pubrec';
  if (p.qos === 2 && (reasonCode === undefined || !isFailure(reasonCode))) {
    c.qos2In.add(p.messageId!);
    // Best effort: if it is lost, a resumed session may take a repeated QoS 2 PUBLISH as new.
    if (c.sessionKept) c.shared.sessions.saveQos2In(c.clientId, [...c.qos2In]).catch(logRejection(c.ctx.log, 'keeping the QoS 2 packet ids of a session', { clientId: c.clientId }));
  }
  c.write(
    c.gen(
      c.version === 5 && reasonCode !== undefined
        ? { cmd, messageId: p.messageId!, reasonCode, ...(reasonString && c.problemInfo ? { properties: { reasonString } } : {}) }
        : { cmd, messageId: p.messageId! },
    ),
  );
}

/** PUBREL: the client releases a QoS 2 message it sent; PUBCOMP ends the exchange. */
export async function handlePubrel(c: MqttClientState, p: IPubrelPacket): Promise<void> {
  const known = c.qos2In.delete(p.messageId!);
  if (known && c.sessionKept) await c.shared.sessions.saveQos2In(c.clientId, [...c.qos2In]);
  // v5: an unknown packet id is answered with 0x92 (Packet Identifier not found).
  c.write(c.gen({ cmd: 'pubcomp', messageId: p.messageId!, ...(known || c.version !== 5 ? {} : { reasonCode: RC.packetIdNotFound }) }));
}
