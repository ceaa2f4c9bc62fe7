/**
 * Issue 12, cluster under faults: PostgreSQL stopped for 70 s while MQTT QoS 1
 * to a persistent session on another node and message-service sends run.
 * The scenario is in test/helpers/fault-pg-scenario.ts.
 */
import { after, before, describe, it } from 'node:test';
import { FaultCluster, faultServicesMissing } from '../helpers/fault-cluster.js';
import { postgresOutageScenario } from '../helpers/fault-pg-scenario.js';

const skip = faultServicesMissing();

describe('cluster under faults: PostgreSQL stopped for 70 s', { skip, timeout: 600_000 }, () => {
  let cl: FaultCluster;
  before(async () => {
    cl = await FaultCluster.start();
  });
  after(async () => {
    await cl?.stop();
  });

  it('acknowledges only what arrives, refuses the rest, loses no node, and works again once PostgreSQL is back', async (t) => {
    await postgresOutageScenario(t, cl, 70);
  });
});
