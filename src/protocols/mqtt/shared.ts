/**
 * State all MQTT connections of a node share, and what they ask of the
 * cluster (set by cluster.ts in cluster mode).
 */
import type { MqttApps } from '../../apps/mqtt-apps.js';
import type { Acl } from '../../core/acl.js';
import type { Principal } from '../../core/auth.js';
import type { CoreMessage } from '../../core/message.js';
import type { RetainedMessages } from './retained.js';
import type { PersistentSessions } from './sessions.js';

/** What another connection (or another node) needs of a connected client: whose it is, and how to end it. */
export interface MqttClient {
  /** The connection's session id (CoreMessage.publisherSession of what it publishes). */
  readonly id: string;
  readonly principal: Principal;
  /** Whether the connection's session is persistent (kept in the store). */
  readonly sessionKept: boolean;
  /** Cluster mode: the session's stored queue got rows; send them. */
  pullStored(): void;
  /** Another connection with this client id took over (here or on another node). */
  takenOver(): void;
}

export interface MqttClusterLink {
  /** Ends the client id's connection (if it is `userId`'s) and session hold on other nodes before this node takes them. */
  takeover(clientId: string, userId: string): Promise<void>;
  /**
   * Keeps a connected client's will where the other nodes find it, so that
   * if this node dies they publish it. Returns a handle for dropWill.
   */
  holdWill(clientId: string, will: CoreMessage, delaySeconds: number): object;
  /** This node has published or discarded the will that holdWill kept. */
  dropWill(clientId: string, handle: object): void;
}

export interface MqttShared {
  apps: MqttApps;
  retained: RetainedMessages;
  /** Connected clients by client id, for session takeover. */
  clients: Map<string, MqttClient>;
  sessions: PersistentSessions;
  acl: Acl;
  /** Cluster mode: the parts of the cluster link MQTT connections use. */
  cluster: MqttClusterLink | undefined;
  /** Stops the front end's timers ($SYS, session expiry). */
  stop(): void;
}
