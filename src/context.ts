import type { MessageService } from './apps/message-service.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Acl } from './core/acl.js';
import type { Auth } from './core/auth.js';
import type { Broker } from './core/broker.js';
import type { Metrics } from './core/metrics.js';
import type { SessionRegistry } from './core/session.js';
import type { Logger } from './log.js';
import type { ClusterControl } from './core/cluster-link.js';
import type { Presence } from './core/presence.js';
import type { Store } from './store/store.js';
import type { Listeners } from './transports/listeners.js';

/**
 * What a protocol or route module gets to work with: narrow views of the
 * node's parts (the cluster as its control channel, never the engine; HTTP
 * routes get the Fastify app besides, as http/app.ts's RouteContext).
 */
export interface HeraldContext {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  readonly store: Store;
  readonly auth: Auth;
  readonly sessions: SessionRegistry;
  readonly broker: Broker;
  /** The message service (JSON WebSocket clients): stored per-user messages with delivery status. */
  readonly messages: MessageService;
  readonly metrics: Metrics;
  /** Topic access rules (aclFile), for every protocol's topic publishes and subscriptions. */
  readonly acl: Acl;
  /** This node's id (cluster presence, queue claims, MQTT session holds). */
  readonly nodeId: string;
  /** Who is connected, on every node. */
  readonly presence: Presence;
  /** Cluster mode: the link to the other nodes; undefined on a single node. */
  readonly cluster: ClusterControl | undefined;
  readonly listeners: Listeners;
}
