/**
 * Mapping between MQTT and Herald's messages: topics (`a/b` is STOMP
 * `/topic/a.b`; `$user/{name}` is a mailbox), v5 publish properties to and
 * from CoreMessage fields, and how properties are kept in the store.
 */
import type { IPublishPacket } from 'mqtt-packet';
import type { CoreMessage, HeaderList } from '../../core/message.js';

/** A message's subscription identifiers: none, one, or several (one copy for overlapping subscriptions). */
export type SubscriptionIds = number | number[] | undefined;

export interface StoredProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  userProperties?: Record<string, string | string[]>;
  subscriptionIdentifier?: number | number[];
  responseTopic?: string;
  correlationData?: Buffer;
  messageExpiryInterval?: number;
}

/** How a message's properties are kept in the store: binary correlation data as base64, expiry as an absolute time. */
export interface PersistedProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  userProperties?: Record<string, string | string[]>;
  subscriptionIdentifier?: number | number[];
  responseTopic?: string;
  correlationData?: string;
  expiresAt?: number;
}

/** The properties of a message as they travel to an MQTT v5 client (`now` for the remaining expiry). */
export function publishProperties(msg: CoreMessage, subscriptionId: SubscriptionIds | null, now: number): StoredProperties {
  const p: StoredProperties = {};
  if (msg.payloadFormat !== undefined) p.payloadFormatIndicator = msg.payloadFormat === 1;
  if (msg.contentType) p.contentType = msg.contentType;
  if (msg.replyTo) p.responseTopic = msg.replyTo;
  if (msg.correlation) p.correlationData = msg.correlation;
  if (msg.expiresAt !== undefined) p.messageExpiryInterval = Math.max(1, Math.ceil((msg.expiresAt - now) / 1000));
  if (msg.headers.length) {
    const up: Record<string, string | string[]> = {};
    for (const [k, v] of msg.headers) {
      const prev = up[k];
      up[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    p.userProperties = up;
  }
  if (subscriptionId !== undefined && subscriptionId !== null) p.subscriptionIdentifier = subscriptionId;
  return p;
}

export function persistedProperties(msg: CoreMessage, subscriptionId: SubscriptionIds | null): PersistedProperties {
  const { correlationData, messageExpiryInterval, ...rest } = publishProperties(msg, subscriptionId, 0);
  void messageExpiryInterval;
  return {
    ...rest,
    ...(correlationData ? { correlationData: correlationData.toString('base64') } : {}),
    ...(msg.expiresAt !== undefined ? { expiresAt: msg.expiresAt } : {}),
  };
}

/** A publish packet's Payload Format Indicator as a CoreMessage field. */
export function payloadFormatOf(properties: { payloadFormatIndicator?: boolean } | undefined): { payloadFormat?: 0 | 1 } {
  const pfi = properties?.payloadFormatIndicator;
  return pfi === undefined ? {} : { payloadFormat: pfi ? 1 : 0 };
}

/** Where a message goes for an MQTT client: its topic, or `$user/{name}` for a mailbox. */
export function mqttTopicOf(msg: CoreMessage): string {
  return msg.target.kind === 'topic' ? msg.target.topic : `$user/${msg.target.name}`;
}

/** v5 user properties as Herald headers (a repeated key keeps every value, in order). */
export function mqttHeaders(props: IPublishPacket['properties']): HeaderList {
  const out: HeaderList = [];
  for (const [k, v] of Object.entries(props?.userProperties ?? {})) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, String(one)]);
  }
  return out;
}
