/**
 * The Store: everything Herald keeps on disk. Two engines implement it,
 * SQLite (embedded, default) and PostgreSQL (cluster mode), and both run one
 * contract suite per domain (test/helpers/store-suite/).
 *
 * Every method that returns resolves only after the write is durable, so a
 * caller may acknowledge a client as soon as the promise settles.
 * Identifiers are strings at this boundary whatever the database uses.
 *
 * Layout. `Store` combines small per-domain contracts, each in its own file
 * with its records and a doc comment on every method:
 *
 *   users.ts     UserStore, TokenStore       accounts and opaque tokens
 *   messages.ts  MessageStore                message-service messages and receipts
 *   threads.ts   ThreadStore                 chat threads, history, receipts
 *   mqtt.ts      MqttStore = MqttAppStore + RetainedStore + MqttSessionStore
 *   queues.ts    QueueStore                  point-to-point queue claims
 *   leases.ts    LeaseStore                  node incarnations: who may hold claims
 *   webhooks.ts  WebhookStore                the webhook outbox (events are also written by
 *                                            the other domains, with the changes they describe)
 *   audit.ts     AuditStore                  what administrators did, pruned
 *   inspect.ts   InspectStore                what the console reads of the stored queues
 *   errors.ts    DuplicateError, StoreUnavailableError, storeUnavailable
 *   rows.ts      table rows and their mappers, shared by both engines
 *   migration.ts the Migration type both engines' schemas are written in
 *
 * Each engine has one file per domain beside its own connection code:
 * `sqlite/users.ts`, `postgres/users.ts`, … Only server.ts names an engine;
 * everything else depends on `Store`, or on the one domain it needs.
 *
 * Composition. A domain is a function over the engine's shared database
 * handle that returns an object implementing that domain's contract, e.g.
 * `sqliteUsers(db): UserStore & TokenStore`, with its prepared statements
 * and helpers in its closure. An engine class is
 *
 *   class SqliteStore extends domainsOf(sqliteUsers, sqliteMessages, …) implements Store
 *
 * where `domainsOf` (compose.ts) builds each domain once over the handle
 * given to `super` and puts its methods on the instance; the class adds only
 * what is engine-wide: opening and migrating, `kind`, `ping`, `close`.
 * `implements Store` makes the compiler check that the domains together
 * cover the whole contract, no method is written twice and none delegates
 * by hand (one class per engine with a method per SQL call would need 56
 * forwarding methods each). Methods are plain own properties that need no
 * `this`, so wrappers such as `timedStore` (a Proxy) still see and time
 * each one by name.
 */
import type { AuditStore } from './audit.js';
import type { InspectStore } from './inspect.js';
import type { LeaseStore } from './leases.js';
import type { MessageStore } from './messages.js';
import type { MqttStore } from './mqtt.js';
import type { QueueStore } from './queues.js';
import type { ThreadStore } from './threads.js';
import type { TokenStore, UserStore } from './users.js';
import type { WebhookStore } from './webhooks.js';

export * from './audit.js';
export * from './errors.js';
export * from './inspect.js';
export * from './leases.js';
export * from './messages.js';
export * from './mqtt.js';
export * from './queues.js';
export * from './threads.js';
export * from './users.js';
export * from './webhooks.js';
export { rowId } from './rows.js';

export interface Store extends UserStore, TokenStore, MessageStore, ThreadStore, MqttStore, QueueStore, LeaseStore, WebhookStore, AuditStore, InspectStore {
  /** Which engine this is, for /readyz, the console and the start-up log. */
  readonly kind: 'sqlite' | 'postgres';
  /** Cheap round trip, for /readyz. */
  ping(): Promise<void>;
  /** Flushes and releases the database. */
  close(): Promise<void>;
}
