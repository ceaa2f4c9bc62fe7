/**
 * PUBLISH from the client, and PUBREL (its QoS 2 release): topic aliases,
 * topic checks, the refusals (server-owned topics, the ACL), retained
 * messages, and the acknowledgement once what persistent sessions must get
 * is on disk.
 */
import type { IPublishPacket, IPubrelPacket } from 'mqtt-packet';
import { logRejection } from '../../core/background.js';
import { levelsProblem } from '../../core/destination.js';
import { createMessage } from '../../core/message.js';
import { mqttHeaders, payloadFormatOf } from './properties.js';
import { isFailure, MqttError, RC } from './reason-codes.js';
import { INBOUND_ALIASES, type MqttClientState } from './state.js';

export async function handlePublish(c: MqttClientState, p: IPublishPacket): Promise<void> {
  const topic = resolveTopic(c, p);
  // mqtt-packet decodes invalid UTF-8 to U+FFFD; such a topic is malformed [MQTT-1.5.3-1].
  if (!topic || /[+#\u0000\uFFFD]/.test(topic)) {
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
  const ack = (reasonCode?: number, reasonString?: string): void => acknowledge(c, p, reasonCode, reasonString);
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
  const props = p.properties;
  const expiry = props?.messageExpiryInterval;
  const base = {
    body: payload,
    qos: p.qos,
    retain: p.retain,
    ...(expiry !== undefined ? { expiresAt: c.ctx.clock.now() + expiry * 1000 } : {}),
    ...(props?.responseTopic !== undefined ? { replyTo: props.responseTopic } : {}),
    ...(props?.correlationData !== undefined ? { correlation: props.correlationData } : {}),
    contentType: props?.contentType,
    ...payloadFormatOf(props),
    headers: mqttHeaders(props),
    publisherSession: c.id,
  };
  c.ctx.metrics.messagesInOf[c.protocol].inc();
  if (topic.startsWith('$user/') && topic.length > 6) {
    const name = topic.slice(6);
    c.ctx.broker.publishUser(createMessage({ ...base, target: { kind: 'user', userId: c.principal.userId, name } }));
    return ack(RC.success);
  }
  // Topics no client may write: $ topics [MQTT-4.7.2-1] and chat threads (the server writes them for their members).
  // A v3 client is not told (the message is simply not delivered, nor retained); a v5 client gets 0x87.
  const asked = c.ctx.broker.publishRefusal(topic);
  const refusal = asked === undefined || typeof asked === 'string' ? asked : await asked;
  if (refusal !== undefined) {
    if (c.closed) return;
    return ack(RC.notAuthorized, topic.startsWith('$') ? `${topic.slice(0, 100)} is reserved for the server` : refusal);
  }
  if (c.closed) return;
  let may = c.mayPublish(topic);
  if (may instanceof Promise) {
    may = await may;
    if (c.closed) return;
  }
  if (!may) {
    return ack(RC.notAuthorized, `not allowed to publish to ${topic}`);
  }
  const msg = createMessage({ ...base, target: { kind: 'topic', topic } });
  const full = p.retain ? c.shared.retained.refusal(topic, msg) : undefined;
  // Past the retained total a v5 publisher is told and nothing happens; a 3.1.1 one cannot be told: delivered, not retained.
  if (full !== undefined && c.version === 5) return ack(RC.quotaExceeded, full);
  if (p.retain && full === undefined) await c.shared.retained.set(topic, msg, p.qos, props);
  const failures = c.shared.sessions.failures;
  const n = c.ctx.broker.publishTopic(msg);
  // QoS 1/2: what persistent sessions must get is on disk before the acknowledgement; if it cannot be, there is none.
  if (p.qos > 0) {
    await c.shared.sessions.flushSince(failures);
    await c.ctx.broker.committed(msg);
  }
  ack(n === 0 ? RC.noMatchingSubscribers : RC.success);
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
