/**
 * What MQTT keeps: the hosted-MQTT apps with their app and user tokens,
 * retained messages, and persistent sessions with their waiting messages.
 * Implemented by sqlite/mqtt.ts and postgres/mqtt.ts.
 */

/** An application of the hosted-MQTT model: it gets app and user tokens with its client id and secret. */
export interface AppRecord {
  id: string;
  name: string;
  clientId: string;
  secretHash: string;
  createdAt: number;
}

/** An app token (kind `app`) or a user token issued by an app (kind `user`, bound to a user name and client id). */
export interface AppTokenRecord {
  hash: string;
  kind: 'app' | 'user';
  appId: string;
  username: string | null;
  cid: string | null;
  expiresAt: number;
}

/** A retained MQTT message: the last one published with retain on its topic. */
export interface RetainedRecord {
  topic: string;
  body: Buffer;
  qos: number;
  /** v5 properties and the content type, as JSON. */
  properties: string;
  updatedAt: number;
}

export interface MqttSubscriptionRecord {
  filter: string;
  qos: number;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: number;
  subscriptionId: number | null;
}

/** A persistent MQTT session (clean session 0, or a v5 session expiry), kept across disconnects and restarts. */
export interface MqttSessionRecord {
  clientId: string;
  /** The owner, as JSON of {userId, name, role}: only the same user may resume the session. */
  owner: string;
  expirySeconds: number;
  /** When the client went away; null while connected. */
  disconnectedAt: number | null;
  subscriptions: MqttSubscriptionRecord[];
  /** QoS 2 packet ids received from the client and not yet released (PUBREC sent, PUBREL awaited). */
  qos2In: number[];
  /** The node that holds the session (cluster mode); another node takes it over when the client lands there. */
  node: string | null;
}

/** A QoS 1/2 message waiting for a persistent session's client. */
export interface MqttQueuedRecord {
  id: string;
  clientId: string;
  topic: string;
  body: Buffer;
  qos: number;
  /** contentType, userProperties, subscriptionIdentifier: JSON. */
  properties: string;
  createdAt: number;
  /** The packet id it was last sent with, if it was sent. */
  packetId: number | null;
  /** QoS 2: the client sent PUBREC, so only PUBREL remains to be sent. */
  released: boolean;
}

/** Hosted-MQTT apps and the tokens they mint. */
export interface MqttAppStore {
  /** Stores a new app; DuplicateError if its id or client id is taken. */
  createApp(app: AppRecord): Promise<void>;
  /** The app with this id, or null. */
  getApp(id: string): Promise<AppRecord | null>;
  /** The app with this client id (client ids are unique), or null. */
  getAppByClientId(clientId: string): Promise<AppRecord | null>;
  /** Every app, oldest first. */
  listApps(): Promise<AppRecord[]>;
  /**
   * Gives an app a new secret (its hash) and deletes the app tokens got with
   * the old one, in one step; user tokens the app minted stay valid. False if
   * there is no such app.
   */
  rotateAppSecret(id: string, secretHash: string): Promise<boolean>;
  /** Deletes an app with every app and user token it has; false if there was none. */
  deleteApp(id: string): Promise<boolean>;
  /** Stores an app or user token. */
  insertAppToken(token: AppTokenRecord): Promise<void>;
  /** The app token with this hash, or null (an expired one may still be found until it is deleted). */
  getAppToken(hash: string): Promise<AppTokenRecord | null>;
  /** Deletes app tokens past their expiry. */
  deleteExpiredAppTokens(now: number): Promise<number>;
}

/** Retained messages, one per topic. */
export interface RetainedStore {
  /** Sets (or with an empty body, clears) the retained message of a topic. */
  setRetained(record: RetainedRecord): Promise<void>;
  /** Every retained message, by topic. */
  listRetained(): Promise<RetainedRecord[]>;
}

/** Persistent sessions and the QoS 1/2 messages waiting for them. */
export interface MqttSessionStore {
  /** Creates or replaces a persistent MQTT session with its subscriptions. */
  saveMqttSession(session: MqttSessionRecord): Promise<void>;
  /** Deletes a session with its waiting messages. */
  deleteMqttSession(clientId: string): Promise<void>;
  /** Every session, by client id. */
  listMqttSessions(): Promise<MqttSessionRecord[]>;
  /** The session of a client id, or null. */
  getMqttSession(clientId: string): Promise<MqttSessionRecord | null>;
  /**
   * Makes `node` the holder of every session held by no node, or by an
   * owner neither in `liveNodes` nor a live incarnation (LeaseStore: not
   * fenced); returns those sessions.
   */
  adoptMqttSessions(node: string, liveNodes: readonly string[]): Promise<MqttSessionRecord[]>;
  /** Keeps a message for a stored session's client; returns its id. */
  enqueueMqtt(message: Omit<MqttQueuedRecord, 'id'>): Promise<string>;
  /**
   * Keeps many messages at once, in one transaction, in the order given (a
   * session's rows are read back in that order); rows for a session that no
   * longer exists are skipped. Resolves once committed, with how many were kept.
   */
  enqueueMqttMany(messages: readonly Omit<MqttQueuedRecord, 'id' | 'packetId' | 'released'>[]): Promise<number>;
  /**
   * Sessions whose subscriptions, owner or holder changed (saved or
   * adopted) at or after `since` (the store's clock, in ms),
   * and the store's clock now: every node follows the sessions of the
   * cluster this way. With `since` 0, every session.
   */
  mqttSessionsChangedSince(since: number): Promise<{ sessions: MqttSessionRecord[]; now: number }>;
  /** Of these client ids, those with stored messages never sent yet. */
  mqttQueuesWaiting(clientIds: readonly string[]): Promise<string[]>;
  /** Records the packet id a waiting message went out with, and whether its PUBREC came back. */
  setMqttQueuedState(id: string, packetId: number, released: boolean): Promise<void>;
  /** A session's waiting messages, oldest first. */
  loadMqttQueue(clientId: string, limit: number): Promise<MqttQueuedRecord[]>;
  /** Removes a waiting message (acknowledged, or dropped). */
  deleteMqttQueued(id: string): Promise<void>;
}

export interface MqttStore extends MqttAppStore, RetainedStore, MqttSessionStore {}
