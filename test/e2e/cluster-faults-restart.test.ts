/**
 * Issue 12, cluster under faults: a node killed with SIGKILL and started again
 * under the same name within a second.
 *
 * Before the kill, node b holds 20 queue messages for a consumer that never
 * acknowledges them, and two offline MQTT persistent sessions with 5
 * acknowledged messages each. The restarted b must not be taken for the old
 * one: the 20 messages reach a consumer on another node (marked redelivered)
 * within about 20 s, each session gets its 5 messages whether it resumes at
 * the new b or elsewhere, and what the new b publishes reaches the other nodes
 * at once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FaultCluster, faultServicesMissing, sleep, until } from '../helpers/fault-cluster.js';
import { ADMIN_STOMP, Ledger, MqttSession, StompPeer, StompQueueConsumer, mqttClient, printProblems, report } from '../helpers/fault-clients.js';
import { header } from '../../src/protocols/stomp/codec.js';

const skip = faultServicesMissing();
/** The bound for the held queue messages to reach another node after the kill. */
const REDELIVERY_BOUND_MS = 20_000;

describe('cluster under faults: a node restarted under the same name within 1 s', { skip, timeout: 600_000 }, () => {
  let cl: FaultCluster;
  before(async () => {
    cl = await FaultCluster.start();
  });
  after(async () => {
    await cl?.stop();
  });

  it('its held queue messages move to another node, its offline MQTT sessions deliver all, and its SENDs reach the other nodes at once', async (t) => {
    const queueLedger = new Ledger('queue-held-20');
    const mqttLedger = new Ledger('mqtt-offline-5x2');
    const topicLedgers = { a: new Ledger('sends-from-new-b@a'), c: new Ledger('sends-from-new-b@c') };
    const closers: (() => void)[] = [];
    try {
      // 20 queue messages held by a consumer on b that never acknowledges.
      const queue = '/queue/faults.restart';
      const holder = await StompQueueConsumer.open(cl, 'b', queue, undefined, { ack: false, name: 'holder@b' });
      const producer = await StompPeer.open(cl, 'a', ADMIN_STOMP);
      closers.push(() => producer.close());
      for (let i = 0; i < 20; i++) {
        await producer.request('SEND', { destination: queue }, `q:${i}`);
        queueLedger.ack(`q:${i}`);
      }
      await until(() => holder.got.length === 20, 'the consumer on b to hold the 20 messages');
      const taker = await StompQueueConsumer.open(cl, 'c', queue, queueLedger, { name: 'consumer@c' });
      closers.push(() => taker.peer.close());

      // Two offline persistent sessions held by b, 5 acknowledged messages each.
      const sessions = ['b', 'c'].map((resumeOn) => ({ resumeOn, s: new MqttSession(cl, mqttLedger, `fault-restart-dev-${resumeOn}`, { qos: 1, version: 4, topic: `faults/restart/${resumeOn}/#` }) }));
      for (const { resumeOn, s } of sessions) {
        await s.connect('b');
        await s.routeFrom('a', `faults/restart/${resumeOn}/probe`);
        await s.disconnect();
      }
      const pub = await mqttClient(cl, 'a');
      // Pipelined, as a device publishes: each message is acknowledged (PUBACK) before the kill.
      await Promise.all(
        sessions.flatMap(({ resumeOn }) =>
          Array.from({ length: 5 }, async (_, i) => {
            const key = `dev-${resumeOn}:${i}`;
            await pub.publishAsync(`faults/restart/${resumeOn}/m`, key, { qos: 1 });
            mqttLedger.ack(key);
          }),
        ),
      );
      await pub.endAsync();
      await sleep(1000); // let them cross the bus to b and be stored: this test is about the restart

      // Topic subscribers on a and c; b has sent many bus frames before it dies.
      for (const n of ['a', 'c'] as const) {
        const w = await StompPeer.open(cl, n, ADMIN_STOMP);
        closers.push(() => w.close());
        w.on((f) => f.command === 'MESSAGE' && topicLedgers[n].receive(`watcher@${n}`, f.body.toString(), header(f, 'redelivered') === 'true'));
        await w.request('SUBSCRIBE', { id: 't', destination: '/topic/faults.restart.*' });
      }
      const oldB = await StompPeer.open(cl, 'b', ADMIN_STOMP);
      let warm = 0;
      oldB.on((f) => f.command === 'MESSAGE' && warm++);
      await oldB.request('SUBSCRIBE', { id: 'w', destination: '/topic/faults.warm' });
      const warmer = await StompPeer.open(cl, 'a', ADMIN_STOMP);
      closers.push(() => warmer.close());
      await until(async () => {
        await warmer.request('SEND', { destination: '/topic/faults.warm' }, 'probe');
        return warm > 0;
      }, 'a to reach b');
      for (let i = 0; i < 200; i++) await oldB.request('SEND', { destination: '/topic/faults.restart.before' }, `before:${i}`);
      await until(() => topicLedgers.a.received >= 200 && topicLedgers.c.received >= 200, 'the 200 SENDs of the old b at a and c', 10_000);

      // kill -9 b and start it again at once.
      const killedAt = await cl.kill9('b');
      const restarting = cl.restart('b', { wait: false });
      const spawnedWithinMs = Date.now() - killedAt;
      await restarting;
      await cl.listening('b');
      const listeningAfterMs = Date.now() - killedAt;
      await until(async () => (await fetch(cl.url('b') + '/readyz')).status === 200, 'the new b to be ready', 30_000);
      const readyAfterMs = Date.now() - killedAt;

      // SENDs from the new b reach a and c right away.
      const newB = await StompPeer.open(cl, 'b', ADMIN_STOMP);
      closers.push(() => newB.close());
      for (let i = 0; i < 5; i++) {
        await newB.request('SEND', { destination: '/topic/faults.restart.after' }, `after:${i}`);
        topicLedgers.a.ack(`after:${i}`);
        topicLedgers.c.ack(`after:${i}`);
      }
      await sleep(2000);
      const sendsMissing = { a: topicLedgers.a.missing().length, c: topicLedgers.c.missing().length };

      // The 20 held messages reach the consumer on c.
      await until(() => queueLedger.missing().length === 0, 'the 20 held messages at c', Math.max(0, killedAt + REDELIVERY_BOUND_MS - Date.now()), 100).catch(() => undefined);
      const queueDoneAfterMs = Date.now() - killedAt;
      const notRedelivered = taker.got.filter((g) => !g.redelivered).map((g) => g.key);

      // Each offline session resumes (one at the new b, one at c) and gets its 5.
      const resumed: Record<string, { sessionPresent: boolean | undefined; error?: string }> = {};
      for (const { resumeOn, s } of sessions) {
        try {
          await s.connect(resumeOn);
          resumed[s.clientId] = { sessionPresent: s.sessionPresent.at(-1) };
        } catch (err) {
          resumed[s.clientId] = { sessionPresent: undefined, error: (err as Error).message };
        }
      }
      await mqttLedger.settle(10_000);
      for (const { s } of sessions) await s.disconnect();

      report(t, cl, 'restart-same-name', [queueLedger, mqttLedger, topicLedgers.a, topicLedgers.c], {
        spawnedWithinMs,
        listeningAfterMs,
        readyAfterMs,
        queueDoneAfterMs,
        queueAtC: taker.got.length,
        queueNotMarkedRedelivered: notRedelivered,
        resumed,
        arrivals: Object.fromEntries(sessions.map(({ s }) => [s.clientId, s.arrivals.join(' ')])),
        sendsFromNewBMissingAfter2s: sendsMissing,
      });
      assert.ok(spawnedWithinMs < 1000, `restarted within 1 s (${spawnedWithinMs} ms)`);
      assert.deepEqual(sendsMissing, { a: 0, c: 0 }, 'SENDs from the restarted b missing at the other nodes after 2 s (of 5 each)');
      assert.equal(queueLedger.missing().length, 0, `the 20 held queue messages at a consumer on c within ${REDELIVERY_BOUND_MS} ms of the kill`);
      assert.deepEqual(notRedelivered, [], 'held messages delivered again without redelivered:true');
      assert.equal(mqttLedger.missing().length, 0, 'acknowledged MQTT messages for the offline sessions of the old b');
      assert.equal(mqttLedger.counts().orderViolations, 0, 'MQTT: the stored messages in the order they were published');
      for (const l of [queueLedger, mqttLedger, topicLedgers.a, topicLedgers.c]) assert.equal(l.counts().unflaggedDuplicates, 0, `${l.label}: duplicates without the redelivered mark`);
      assert.deepEqual(cl.unexpectedExits, [], 'node exits');
    } catch (err) {
      printProblems(cl, 30, { t, scenario: 'restart-same-name', ledgers: [queueLedger, mqttLedger, topicLedgers.a, topicLedgers.c], err });
      throw err;
    } finally {
      for (const f of closers) f();
    }
  });
});
