/**
 * MQTT reason codes by name, and the one place where an error met while
 * handling a packet becomes a DISCONNECT (or, before CONNACK, a refusing
 * CONNACK), as mosquitto's read_handle.c does.
 *
 * Handlers end a connection by throwing: `MqttError` for a DISCONNECT with
 * a reason code, `ConnectRefused` for a refusing CONNACK; anything else is
 * mapped by `failureFor`.
 */
import { storeUnavailable } from '../../store/store.js';

/** MQTT 5.0 reason codes Herald sends (section 2.4). */
export const RC = {
  success: 0x00,
  /** DISCONNECT from the client: publish the will anyway. */
  disconnectWithWill: 0x04,
  noMatchingSubscribers: 0x10,
  noSubscriptionExisted: 0x11,
  unspecifiedError: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  unsupportedProtocolVersion: 0x84,
  clientIdNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  quotaExceeded: 0x97,
  administrativeAction: 0x98,
} as const;

export type ReasonCode = (typeof RC)[keyof typeof RC];

/** Whether a reason code says the request failed (0x80 and above) rather than succeeded. */
export function isFailure(code: number): boolean {
  return code >= RC.unspecifiedError;
}

/** MQTT 3.1.1 SUBACK: the subscription was refused (3.1.1 has no finer reasons). */
export const SUBACK_V3_FAILURE = 0x80;

/** A refusing CONNACK: the MQTT 3.1.1 return code and the 5.0 reason code. */
export interface Refusal {
  v3: number;
  v5: ReasonCode;
}

/** CONNACK refusals (3.1.1 return codes: 1 protocol version, 2 identifier rejected, 3 server unavailable, 4 bad user name or password, 5 not authorized). */
export const REFUSE = {
  version: { v3: 1, v5: RC.unsupportedProtocolVersion },
  clientId: { v3: 2, v5: RC.clientIdNotValid },
  badCredentials: { v3: 4, v5: RC.badUserNameOrPassword },
  notAuthorized: { v3: 5, v5: RC.notAuthorized },
  quota: { v3: 3, v5: RC.quotaExceeded },
  unavailable: { v3: 3, v5: RC.serverUnavailable },
  authMethod: { v3: 4, v5: RC.badAuthenticationMethod },
  /** A will topic that is no valid topic name. */
  willTopic: { v3: 2, v5: RC.topicNameInvalid },
  /** A will topic under `$`, which only the server writes. */
  reservedWillTopic: { v3: 5, v5: RC.topicNameInvalid },
} as const satisfies Record<string, Refusal>;

/** Ends the connection with a DISCONNECT (v5) carrying `code` and the message as its reason string. */
export class MqttError extends Error {
  constructor(
    readonly code: ReasonCode,
    message: string,
    /** Counted in herald_protocol_errors_total under this reason, when set. */
    readonly metric?: string,
  ) {
    super(message);
  }
}

/** Refuses a CONNECT with a CONNACK carrying the refusal (and, in v5, the message as reason string). */
export class ConnectRefused extends Error {
  constructor(
    readonly refusal: Refusal,
    message: string,
    /** Counted in herald_protocol_errors_total under this reason (else `connect_refused`). */
    readonly metric?: string,
  ) {
    super(message);
  }
}

/** What to do about an error met while handling a packet. */
export type Failure =
  | { kind: 'disconnect'; code: ReasonCode; reason: string; metric?: string; storeDown?: Error }
  | { kind: 'refuse'; refusal: Refusal; reason: string; metric?: string; storeDown?: Error }
  /** Not the client's doing: logged as an error, then a DISCONNECT 0x80. */
  | { kind: 'internal'; code: ReasonCode; reason: string };

/**
 * The one mapping from errors to what the client is told: after CONNACK a
 * DISCONNECT with a reason code, before it a refusing CONNACK.
 */
export function failureFor(err: unknown, connected: boolean): Failure {
  if (err instanceof MqttError) return { kind: 'disconnect', code: err.code, reason: err.message, ...(err.metric ? { metric: err.metric } : {}) };
  if (err instanceof ConnectRefused) return { kind: 'refuse', refusal: err.refusal, reason: err.message, ...(err.metric ? { metric: err.metric } : {}) };
  const storeDown = storeUnavailable(err);
  if (storeDown) {
    // No PUBACK/SUBACK for what was not stored: the client repeats it after reconnecting.
    return connected
      ? { kind: 'disconnect', code: RC.serverBusy, reason: 'server busy: the message store is unavailable; reconnect and repeat later', storeDown }
      : { kind: 'refuse', refusal: REFUSE.unavailable, reason: 'server unavailable: the message store is unavailable; try again later', storeDown };
  }
  return { kind: 'internal', code: RC.unspecifiedError, reason: 'internal error' };
}
