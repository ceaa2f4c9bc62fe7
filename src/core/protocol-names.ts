/**
 * The client protocols by the names sessions, presence and metrics give
 * them (the `protocol` label of every herald_* metric that has one).
 */
export const PROTOCOLS = ['stomp-ws', 'stomp-tcp', 'json-ws', 'mqtt-tcp', 'mqtt-ws'] as const;

/** A client protocol: how a session is connected. */
export type Protocol = (typeof PROTOCOLS)[number];

/** Who did something a metric counts: a client protocol, or the HTTP API. */
export type ProtocolLabel = Protocol | 'http';
