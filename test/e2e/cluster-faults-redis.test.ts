/**
 * Issue 12, cluster under faults: Redis restarted, empty, after 5 s down.
 *
 * Every node loses the bus and presence at once and finds an empty Redis when
 * it comes back. No node may take another's work for that: queue messages a
 * live consumer holds stay with it, connected MQTT clients keep their
 * connection and session, and QoS 1 messages to a persistent session on
 * another node that were acknowledged during the outage all arrive.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FaultCluster, faultServicesMissing, sleep, until } from '../helpers/fault-cluster.js';
import { ADMIN_STOMP, Ledger, MqttSession, MqttStreamPublisher, StompPeer, StompQueueConsumer, StompStreamProducer, printProblems, report } from '../helpers/fault-clients.js';

const skip = faultServicesMissing();
const DOWN_MS = 5000;

describe('cluster under faults: Redis restarted empty after 5 s', { skip, timeout: 600_000 }, () => {
  let cl: FaultCluster;
  before(async () => {
    cl = await FaultCluster.start();
  });
  after(async () => {
    await cl?.stop();
  });

  it('no node takes another\'s work, no connected MQTT client is taken over, and QoS 1 acknowledged during the outage arrives', async (t) => {
    const mqttLedger = new Ledger('mqtt-qos1');
    const heldLedger = new Ledger('queue-held');
    const queueLedger = new Ledger('stomp-queue');
    const sub = new MqttSession(cl, mqttLedger, 'fault-redis-sub', { qos: 1, version: 4, topic: 'faults/redis/#' });
    const idle = new MqttSession(cl, undefined, 'fault-redis-idle', { qos: 1, version: 5, topic: 'faults/idle/#' });
    const pub = new MqttStreamPublisher(cl, mqttLedger, 'rpub', { nodes: ['a'], topic: 'faults/redis/s', qos: 1, intervalMs: 20, window: 10 });
    const qprod = new StompStreamProducer(cl, queueLedger, 'rq', { nodes: ['a'], destination: '/queue/faults.redis.stream', intervalMs: 25, window: 10 });
    const cleanup: (() => void)[] = [];
    const phases: Record<string, number> = {};
    const t0 = Date.now();
    try {
      // A persistent session on b fed from a; an idle persistent client on c.
      await sub.connect('b');
      await sub.routeFrom('a', 'faults/redis/probe');
      await idle.connect('c');

      // Ten queue messages a live consumer on b holds (never acks), and a consumer on c that must not get them.
      const heldQ = '/queue/faults.redis.held';
      const holder = await StompQueueConsumer.open(cl, 'b', heldQ, heldLedger, { ack: false, name: 'holder@b' });
      cleanup.push(() => holder.peer.close());
      const producer = await StompPeer.open(cl, 'a', ADMIN_STOMP);
      cleanup.push(() => producer.close());
      for (let i = 0; i < 10; i++) {
        await producer.request('SEND', { destination: heldQ }, `held:${i}`);
        heldLedger.ack(`held:${i}`);
      }
      await until(() => holder.got.length === 10, 'the holder on b to have the 10 messages');
      const other = await StompQueueConsumer.open(cl, 'c', heldQ, heldLedger, { name: 'other@c' });
      cleanup.push(() => other.peer.close());

      // A queue stream from a to consumers on b and c, through the outage.
      const qb = await StompQueueConsumer.open(cl, 'b', '/queue/faults.redis.stream', queueLedger, { name: 'stream@b' });
      const qc = await StompQueueConsumer.open(cl, 'c', '/queue/faults.redis.stream', queueLedger, { name: 'stream@c' });
      cleanup.push(() => qb.peer.close(), () => qc.peer.close());

      const mqttStream = pub.run(1e9);
      const queueStream = qprod.run(1e9);
      await sleep(2000);
      phases['redisStoppedAt'] = Date.now() - t0;
      const ackedBefore = mqttLedger.acked.size;
      await cl.restartRedis(DOWN_MS);
      phases['redisStartedAt'] = Date.now() - t0;
      const ackedDuring = mqttLedger.acked.size - ackedBefore;
      await cl.waitReady(30_000);
      phases['readyAgainAt'] = Date.now() - t0;
      // Long enough for any node to decide another is dead (TTL plus heartbeats).
      await sleep(cl.ttl * 2000 + 3000);
      pub.stop();
      qprod.stop();
      await mqttStream;
      await queueStream;
      phases['trafficStoppedAt'] = Date.now() - t0;
      const settleMs = Math.max(await mqttLedger.settle(20_000), await queueLedger.settle(20_000));

      report(t, cl, 'redis-restart', [mqttLedger, queueLedger, heldLedger], {
        phasesMs: phases,
        mqttAckedDuringOutage: ackedDuring,
        subscriberServerCloses: sub.serverCloses,
        idleClientServerCloses: idle.serverCloses,
        heldStillWithHolder: holder.got.length,
        holderConnectionClosed: holder.peer.isClosed,
        heldTakenByOtherNode: other.got.map((g) => `${g.key}${g.redelivered ? ' (redelivered)' : ''}`),
        streamConsumed: { b: qb.got.length, c: qc.got.length },
        publisherCloses: pub.closes,
        waitedForStragglersMs: settleMs,
      });
      assert.deepEqual(sub.serverCloses, [], 'the MQTT client on b was disconnected by the server');
      assert.deepEqual(idle.serverCloses, [], 'the MQTT client on c was disconnected by the server');
      assert.equal(holder.peer.isClosed, false, 'the queue consumer on b lost its connection');
      assert.deepEqual(other.got, [], 'queue messages held by a live consumer on b were handed to a consumer on c');
      for (const l of [mqttLedger, queueLedger]) {
        assert.equal(l.counts().ackedMissing, 0, `${l.label}: acknowledged but never received`);
        assert.equal(l.counts().unflaggedDuplicates, 0, `${l.label}: duplicates without the redelivered mark`);
      }
      assert.equal(mqttLedger.counts().orderViolations, 0, 'mqtt: order per publisher');
      assert.deepEqual(cl.unexpectedExits, [], 'node exits');
    } catch (err) {
      printProblems(cl, 30, { t, scenario: 'redis-restart', ledgers: [mqttLedger, queueLedger, heldLedger], err, extra: { phasesMs: phases } });
      throw err;
    } finally {
      pub.stop();
      qprod.close();
      await pub.close();
      await sub.disconnect();
      await idle.disconnect();
      for (const f of cleanup) f();
    }
  });
});
