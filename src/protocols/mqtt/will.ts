/**
 * Wills (as mosquitto's will_delay.c): checked at CONNECT under the same
 * rules as the client's PUBLISH, kept with the cluster while the client is
 * connected (so another node publishes it if this one dies), and published
 * when the connection ends without a normal DISCONNECT: after the will
 * delay or when the session ends, whichever is first.
 */
import type { IConnectPacket } from 'mqtt-packet';
import { logRejection } from '../../core/background.js';
import type { Broker } from '../../core/broker.js';
import { levelsProblem } from '../../core/destination.js';
import { createMessage, type CoreMessage } from '../../core/message.js';
import { mqttHeaders, payloadFormatOf } from './properties.js';
import { ConnectRefused, REFUSE } from './reason-codes.js';
import type { MqttClientState, QoS } from './state.js';

type Will = NonNullable<IConnectPacket['will']>;

/** CONNECT step: the will is published later as this client, so the same rules as its PUBLISH apply now. */
export async function checkWill(c: MqttClientState, will: Will | undefined): Promise<void> {
  if (!will) return;
  const topic = will.topic;
  if (!topic || /[+#\u0000\uFFFD]/.test(topic)) throw new ConnectRefused(REFUSE.willTopic, `the will topic "${topic.slice(0, 100)}" is not a valid topic name`);
  const deep = levelsProblem(topic);
  if (deep) throw new ConnectRefused(REFUSE.willTopic, `the will topic: ${deep}`);
  const refusal = await c.ctx.broker.publishRefusal(topic);
  if (c.closed) return;
  if (refusal !== undefined) {
    // $ topics as before (0x90); topics the server writes itself, such as chat threads: not authorized.
    if (topic.startsWith('$')) throw new ConnectRefused(REFUSE.reservedWillTopic, `the will topic ${topic.slice(0, 100)} is reserved for the server`);
    throw new ConnectRefused(REFUSE.notAuthorized, `not allowed to publish the will to ${topic.slice(0, 100)}: ${refusal}`);
  }
  if (!(await c.mayPublish(topic))) {
    throw new ConnectRefused(REFUSE.notAuthorized, `not allowed to publish the will to ${topic.slice(0, 100)}`, null);
  }
}

/**
 * Whether a will may still go to `topic` now. It was checked at CONNECT,
 * but the topic may have become the server's since (a chat thread created
 * while the client was connected): such a will is dropped, never published.
 */
export async function willStillAllowed(broker: Broker, topic: string): Promise<boolean> {
  return (await broker.publishRefusal(topic)) === undefined;
}

export function willMessage(will: Will): CoreMessage {
  return createMessage({
    target: { kind: 'topic', topic: will.topic },
    body: typeof will.payload === 'string' ? Buffer.from(will.payload) : will.payload,
    qos: (will.qos ?? 0) as QoS,
    retain: will.retain,
    contentType: will.properties?.contentType,
    ...payloadFormatOf(will.properties),
    headers: mqttHeaders(will.properties),
  });
}

/** CONNECT step (cluster mode): another node publishes the will if this one dies, after the will delay or when the session ends. */
export function holdWill(c: MqttClientState, sessionExpiry: number): void {
  if (!c.will || !c.shared.cluster) return;
  const delay = Math.min(c.will.properties?.willDelayInterval ?? 0, sessionExpiry);
  c.heldWill = c.shared.cluster.holdWill(c.clientId, willMessage(c.will), delay);
}

/**
 * The connection ended: the cluster no longer keeps the will (this node
 * settles it), and unless the client said goodbye it is published after
 * its delay or when the session ends (`sessionSeconds`; 0: at once)
 * [MQTT-3.1.3.2.2].
 */
export function settleWill(c: MqttClientState, sessionSeconds: number): void {
  if (c.heldWill) c.shared.cluster?.dropWill(c.clientId, c.heldWill);
  const will = c.will;
  if (!will) return;
  const send = async (): Promise<void> => {
    if (!(await willStillAllowed(c.ctx.broker, will.topic))) {
      c.ctx.log.info({ clientId: c.clientId, topic: will.topic.slice(0, 100) }, 'will dropped: its topic is now written by the server only');
      return;
    }
    const msg = willMessage(will);
    if (will.retain) void c.shared.retained.set(will.topic, msg, (will.qos ?? 0) as QoS, will.properties).catch(logRejection(c.ctx.log, 'storing a retained will', { clientId: c.clientId }));
    c.ctx.broker.publishTopic(msg);
  };
  const sendSafely = (): void => {
    send().catch((err: unknown) => c.ctx.log.warn({ err, clientId: c.clientId }, 'could not publish a will'));
  };
  const delay = Math.min(will.properties?.willDelayInterval ?? 0, sessionSeconds);
  if (delay > 0) {
    const clientId = c.clientId;
    const timer = setTimeout(() => {
      // A client that came back with the same id in time cancels its will [MQTT-3.1.3-9].
      if (!c.shared.clients.has(clientId)) sendSafely();
    }, delay * 1000);
    timer.unref();
  } else {
    sendSafely();
  }
}
