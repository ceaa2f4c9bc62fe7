import type { FastifyInstance } from 'fastify';
import type { MessageService } from './apps/message-service.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Auth } from './core/auth.js';
import type { Broker } from './core/broker.js';
import type { Metrics } from './core/metrics.js';
import type { SessionRegistry } from './core/session.js';
import type { Logger } from './log.js';
import type { Store } from './store/store.js';
import type { Listeners } from './transports/listeners.js';

/** What a protocol or route module gets to work with. */
export interface HeraldContext {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  readonly store: Store;
  readonly auth: Auth;
  readonly sessions: SessionRegistry;
  readonly broker: Broker;
  /** The message service (seed 002): stored per-user messages with delivery status. */
  readonly messages: MessageService;
  readonly metrics: Metrics;
  readonly http: FastifyInstance;
  readonly listeners: Listeners;
}
