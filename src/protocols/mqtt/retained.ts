/**
 * Retained messages (as mosquitto's retain.c): the last message kept per
 * topic, in memory for matching new subscriptions and in the store for
 * restarts. In cluster mode, cluster.ts passes each one set here to the
 * other nodes, which `apply` it to their copy.
 */
import type { IPublishPacket, QoS } from 'mqtt-packet';
import type { HeraldContext } from '../../context.js';
import { topicMatches } from '../../core/destination.js';
import { createMessage, type CoreMessage } from '../../core/message.js';
import { mqttHeaders, payloadFormatOf } from './properties.js';

export class RetainedMessages {
  private readonly byTopic = new Map<string, { msg: CoreMessage; qos: QoS }>();
  /** Told of every retained message set on this node (cluster mode passes it on). */
  onSet: ((topic: string, msg: CoreMessage, qos: QoS) => void) | undefined;

  constructor(private readonly ctx: Pick<HeraldContext, 'store' | 'clock'>) {}

  async load(): Promise<void> {
    for (const r of await this.ctx.store.listRetained()) {
      const props = JSON.parse(r.properties) as IPublishPacket['properties'];
      this.byTopic.set(r.topic, {
        qos: r.qos as QoS,
        msg: createMessage({ target: { kind: 'topic', topic: r.topic }, body: r.body, contentType: props?.contentType, ...payloadFormatOf(props), headers: mqttHeaders(props) }),
      });
    }
  }

  /** Stores (durably) or, with an empty payload, clears the topic's retained message. */
  async set(topic: string, msg: CoreMessage, qos: QoS, properties: IPublishPacket['properties']): Promise<void> {
    this.apply(topic, msg, qos);
    await this.ctx.store.setRetained({ topic, body: msg.body, qos, properties: JSON.stringify(properties ?? {}), updatedAt: this.ctx.clock.now() });
    this.onSet?.(topic, msg, qos);
  }

  /** Sets or clears the in-memory copy only (another node stored it). */
  apply(topic: string, msg: CoreMessage, qos: QoS): void {
    if (msg.body.length === 0) this.byTopic.delete(topic);
    else this.byTopic.set(topic, { msg, qos });
  }

  /** Kept in memory only (server statistics that are rebuilt after a restart anyway). */
  setVolatile(topic: string, msg: CoreMessage): void {
    this.byTopic.set(topic, { msg, qos: 0 });
  }

  *matching(filter: string): Iterable<{ msg: CoreMessage; qos: QoS }> {
    for (const [topic, r] of this.byTopic) if (topicMatches(filter, topic)) yield r;
  }
}
