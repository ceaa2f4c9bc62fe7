/**
 * The Store contract, as one suite per domain that every engine runs
 * unchanged (SQLite, and PostgreSQL for cluster mode). Each domain suite
 * needs only its own contract (users.ts tests UserStore & TokenStore, …), so
 * a domain can be checked on its own; `storeSuite` runs them all on one engine.
 */
import { describe } from 'node:test';
import { auditStoreSuite } from './audit.js';
import { durabilitySuite } from './durability.js';
import { inspectStoreSuite } from './inspect.js';
import type { StoreFactory } from './harness.js';
import { leaseStoreSuite } from './leases.js';
import { messageStoreSuite } from './messages.js';
import { mqttStoreSuite } from './mqtt.js';
import { queueStoreSuite } from './queues.js';
import { threadStoreSuite } from './threads.js';
import { userStoreSuite } from './users.js';
import { webhookStoreSuite } from './webhooks.js';

export type { Opened, StoreFactory } from './harness.js';

export function storeSuite(name: string, factory: StoreFactory, skip: string | false = false): void {
  describe(`Store contract: ${name}`, { skip }, () => {
    userStoreSuite(factory);
    messageStoreSuite(factory);
    threadStoreSuite(factory);
    mqttStoreSuite(factory);
    queueStoreSuite(factory);
    leaseStoreSuite(factory);
    webhookStoreSuite(factory);
    auditStoreSuite(factory);
    inspectStoreSuite(factory);
    const reopen = factory.reopen;
    if (reopen) durabilitySuite({ ...factory, reopen });
  });
}
