/**
 * Issue 12, cluster under faults: kill -9 of a node mid-stream.
 *
 * Three nodes, each its own process (test/helpers/fault-cluster.ts). A
 * publisher on node a pipelines numbered messages; the receiver is on node b,
 * which is killed with SIGKILL a third of the way through; the receiver goes
 * on at node c. Everything the server acknowledged must arrive, duplicates
 * only with the redelivered mark, in order per publisher (MQTT), and no node
 * may exit on its own.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { FaultCluster, faultServicesMissing, sleep } from '../helpers/fault-cluster.js';
import { Ledger, MqttSession, MqttStreamPublisher, StompQueueConsumer, StompStreamProducer, printProblems, report } from '../helpers/fault-clients.js';

const skip = faultServicesMissing();
const COUNT = 600;
const KILL_AT = 200;

describe('cluster under faults: kill -9 of a node mid-stream', { skip, timeout: 600_000 }, () => {
  let cl: FaultCluster;
  before(async () => {
    cl = await FaultCluster.start();
  });
  after(async () => {
    await cl?.stop();
  });
  afterEach(async () => {
    if (!cl.alive('b')) {
      await cl.restart('b');
      await cl.waitReady();
    }
  });

  for (const v of [
    { qos: 1 as const, version: 4 as const, what: 'QoS 1, MQTT 3.1.1 clean session 0' },
    { qos: 2 as const, version: 5 as const, what: 'QoS 2, MQTT 5 session expiry' },
  ]) {
    it(`MQTT ${v.what}: every acknowledged message reaches the persistent session, which moves from the killed node to another, in order`, async (t) => {
      const ledger = new Ledger(`mqtt-qos${v.qos}`);
      const topic = `faults/kill/q${v.qos}`;
      const sub = new MqttSession(cl, ledger, `fault-kill-sub-q${v.qos}`, { qos: v.qos, version: v.version, topic: `${topic}/#` });
      const pub = new MqttStreamPublisher(cl, ledger, `pub${v.qos}`, { nodes: ['a'], topic: `${topic}/s`, qos: v.qos, version: v.version, intervalMs: 10, window: 20 });
      let moved: Promise<string> | undefined;
      let killedAt = 0;
      let settleMs = 0;
      try {
        await sub.connect('b');
        await sub.routeFrom('a', `${topic}/probe`);
        await pub.run(COUNT, (seq) => {
          if (seq !== KILL_AT) return;
          moved = (async () => {
            killedAt = await cl.kill9('b');
            // The client notices its connection is gone and comes back at once, elsewhere.
            return sub.connectAny(['c', 'a']);
          })();
        });
        const resumedOn = await moved!;
        settleMs = await ledger.settle(20_000);
        const c = ledger.counts();
        report(t, cl, `kill-mqtt-qos${v.qos}`, [ledger], {
          resumedOn,
          sessionPresent: sub.sessionPresent,
          publisherReconnects: pub.connects - 1,
          waitedAfterStreamMs: settleMs,
          streamEndedAfterKillMs: Date.now() - killedAt - settleMs,
        });
        assert.ok(c.acked > COUNT / 2, `most messages acknowledged (${c.acked})`);
        assert.equal(sub.sessionPresent.at(-1), true, 'the session was found on resuming at another node');
        assert.equal(c.ackedMissing, 0, 'acknowledged but never received');
        assert.equal(c.unflaggedDuplicates, 0, 'duplicates without DUP');
        assert.equal(c.orderViolations, 0, 'order per publisher');
        assert.deepEqual(cl.unexpectedExits, [], 'node exits');
      } catch (err) {
        printProblems(cl, 30, { t, scenario: `kill-mqtt-qos${v.qos}`, ledgers: [ledger], err, extra: { sessionPresent: sub.sessionPresent } });
        throw err;
      } finally {
        pub.stop();
        await pub.close();
        await sub.disconnect();
      }
    });
  }

  it('STOMP /queue/: every receipted SEND is consumed once the killed node\'s claims are released; duplicates carry redelivered', async (t) => {
    const ledger = new Ledger('stomp-queue');
    const queue = '/queue/faults.kill';
    const onB = await StompQueueConsumer.open(cl, 'b', queue, ledger, { name: 'consumer@b' });
    const onC = await StompQueueConsumer.open(cl, 'c', queue, ledger, { name: 'consumer@c', ws: true });
    const prod = new StompStreamProducer(cl, ledger, 'sa', { nodes: ['a'], destination: queue, intervalMs: 8, window: 20 });
    let killedAt = 0;
    try {
      await prod.run(COUNT, (seq) => {
        if (seq === KILL_AT) void cl.kill9('b').then((at) => (killedAt = at));
      });
      const settleMs = await ledger.settle(25_000);
      const c = ledger.counts();
      const redelivered = onC.got.filter((g) => g.redelivered).length;
      report(t, cl, 'kill-stomp-queue', [ledger], {
        consumedOnB: onB.got.length,
        consumedOnC: onC.got.length,
        redeliveredOnC: redelivered,
        waitedAfterStreamMs: settleMs,
        sinceKillMs: Date.now() - killedAt,
        note: 'orderViolations is informational for a queue with competing consumers',
      });
      assert.ok(onB.got.length > 0 && onC.got.length > 0, 'both consumers took messages before the kill');
      assert.equal(c.ackedMissing, 0, 'receipted but never consumed');
      assert.equal(c.unflaggedDuplicates, 0, 'consumed twice without redelivered:true');
      assert.deepEqual(cl.unexpectedExits, [], 'node exits');
    } catch (err) {
      printProblems(cl, 30, { t, scenario: 'kill-stomp-queue', ledgers: [ledger], err });
      throw err;
    } finally {
      prod.close();
      onC.peer.close();
      await sleep(10);
    }
  });
});
