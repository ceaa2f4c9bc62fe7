/**
 * Issue 12: PostgreSQL stopped while traffic runs (test/e2e/cluster-faults-pg-*.test.ts).
 *
 * MQTT QoS 1 from node a to a persistent session on node b, and message-service
 * sends (HTTP, node c) to a user online on b (STOMP /user/queue/messages) and
 * to one offline, run before, during and after PostgreSQL is stopped for
 * `downSeconds`. Refusals are fine (not acknowledged); what was acknowledged
 * must arrive, no node may exit, and once PostgreSQL is back everything works
 * again: /readyz, logins, new MQTT and STOMP connections, sends.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { FaultCluster, sleep } from './fault-cluster.js';
import { Ledger, MailboxReceiver, MqttSession, MqttStreamPublisher, StompQueueConsumer, StompPeer, ADMIN_STOMP, printProblems, report, sendMessage } from './fault-clients.js';

export async function postgresOutageScenario(t: TestContext, cl: FaultCluster, downSeconds: number): Promise<void> {
  const label = `pg-down-${downSeconds}s`;
  const admin = await cl.login('a');
  const mia = await cl.addUser(admin, `mia${downSeconds}`);
  const olaf = await cl.addUser(admin, `olaf${downSeconds}`);
  const mqttLedger = new Ledger('mqtt-qos1');
  const miaLedger = new Ledger('mailbox-online');
  const olafLedger = new Ledger('mailbox-offline');

  const topic = `faults/pg${downSeconds}`;
  const sub = new MqttSession(cl, mqttLedger, `fault-pg${downSeconds}-sub`, { qos: 1, version: 4, topic: `${topic}/#` });
  const pub = new MqttStreamPublisher(cl, mqttLedger, 'pgpub', { nodes: ['a'], topic: `${topic}/s`, qos: 1, intervalMs: 20, window: 10 });
  const mailbox = new MailboxReceiver(cl, miaLedger, mia);
  let sends = 0;
  let sendsStop = false;
  const sendStatuses = new Map<number, number>();
  const sender = (async () => {
    let token = admin;
    for (let seq = 0; !sendsStop; seq++) {
      const key = `ms:${seq}`;
      miaLedger.sent++;
      olafLedger.sent++;
      let status = await sendMessage(cl, 'c', token, [mia.id, olaf.id], key);
      if (status === 401) {
        // The token may have been judged dead while the store was away: log in again (a real back end would).
        token = await cl.login('c').catch(() => token);
        status = 0;
      }
      sendStatuses.set(status, (sendStatuses.get(status) ?? 0) + 1);
      if (status === 200) {
        miaLedger.ack(key);
        olafLedger.ack(key);
      } else {
        miaLedger.refused++;
        olafLedger.refused++;
      }
      sends++;
      await sleep(150);
    }
  })();

  const phases: Record<string, number> = {};
  const t0 = Date.now();
  let streaming: Promise<void> | undefined;
  try {
    await sub.connect('b');
    await sub.routeFrom('a', `${topic}/probe`);
    sub.keepConnected(['b', 'c']);
    await mailbox.connect('b');
    mailbox.keepConnected(['b', 'c']);
    streaming = pub.run(1e9);
    await sleep(2000);

    phases['pgStoppedAt'] = Date.now() - t0;
    await cl.stopPg();
    const ackedBefore = mqttLedger.acked.size;
    await sleep(downSeconds * 1000);
    const ackedDuring = mqttLedger.acked.size - ackedBefore;
    await cl.startPg();
    phases['pgStartedAt'] = Date.now() - t0;
    await cl.waitReady(60_000);
    phases['readyAgainAt'] = Date.now() - t0;
    const ackedAtReady = mqttLedger.acked.size;
    // Traffic goes on for a while after the store is back.
    await sleep(5000);
    pub.stop();
    sendsStop = true;
    await streaming;
    await sender;
    phases['trafficStoppedAt'] = Date.now() - t0;
    const ackedAfter = mqttLedger.acked.size - ackedAtReady;

    // The nodes still running (a node that died is reported, and fails the scenario, below).
    const live = cl.names.filter((n) => cl.alive(n));
    const pick = (...prefer: string[]): string => {
      const n = prefer.find((x) => live.includes(x)) ?? live[0];
      if (n === undefined) throw new Error(`every node exited: ${cl.unexpectedExits.map((e) => `${e.name} (code ${e.code})`).join(', ')}`);
      return n;
    };

    // The offline user comes online after the outage, on another node.
    const olafBox = new MailboxReceiver(cl, olafLedger, olaf);
    await olafBox.reconnect([pick('c', 'a')]);
    const settleMs = Math.max(await mqttLedger.settle(30_000), await miaLedger.settle(15_000), await olafLedger.settle(15_000));

    // Everything works again: logins on every node, new connections, a queue round trip, a send.
    const works: Record<string, boolean | string> = {};
    const check = async (what: string, f: () => Promise<boolean>): Promise<void> => {
      works[what] = await f().catch((err: Error) => `failed: ${err.message}`);
    };
    for (const n of cl.names) await check(`login@${n}`, () => cl.login(n).then(() => true));
    await check('queueRoundTrip', async () => {
      const q = new Ledger('after');
      const consumer = await StompQueueConsumer.open(cl, pick('b', 'c'), '/queue/faults.pg.after', q);
      const producer = await StompPeer.open(cl, pick('a'), ADMIN_STOMP);
      try {
        for (let i = 0; i < 5; i++) {
          await producer.request('SEND', { destination: '/queue/faults.pg.after' }, `after:${i}`);
          q.ack(`after:${i}`);
        }
        await q.settle(10_000);
        return q.missing().length === 0;
      } finally {
        producer.close();
        consumer.peer.close();
      }
    });
    await check('mqttAfter', async () => {
      const freshSub = new MqttSession(cl, new Ledger('fresh'), `fault-pg${downSeconds}-fresh`, { qos: 1, version: 4, topic: `${topic}-fresh/#` });
      await freshSub.connect(pick('c', 'b'));
      try {
        await freshSub.routeFrom(pick('a'), `${topic}-fresh/probe`);
        return true;
      } finally {
        await freshSub.disconnect();
      }
    });
    await check('sendAfter', async () => (await sendMessage(cl, pick('a'), await cl.login(pick('a')), [olaf.id], 'ms:after')) === 200);
    olafBox.close();

    report(t, cl, label, [mqttLedger, miaLedger, olafLedger], {
      phasesMs: phases,
      mqttAckedDuringOutage: ackedDuring,
      mqttAckedAfterReady: ackedAfter,
      httpStatuses: Object.fromEntries(sendStatuses),
      sends,
      publisherConnects: pub.connects,
      publisherCloses: pub.closes.length,
      subscriberServerCloses: sub.serverCloses,
      subscriberReconnects: sub.reconnects,
      mailboxDisconnects: mailbox.disconnects,
      waitedForStragglersMs: settleMs,
      works,
    });
    assert.deepEqual(cl.unexpectedExits, [], 'node exits');
    for (const l of [mqttLedger, miaLedger, olafLedger]) {
      const c = l.counts();
      assert.equal(c.ackedMissing, 0, `${l.label}: acknowledged but never received`);
      assert.equal(c.unflaggedDuplicates, 0, `${l.label}: duplicates without the redelivered mark`);
    }
    assert.equal(mqttLedger.counts().orderViolations, 0, 'mqtt: order per publisher');
    assert.ok(ackedAfter > 0, 'MQTT publishing is acknowledged again once PostgreSQL is back');
    assert.ok(miaLedger.acked.size > 0, 'some sends were acknowledged');
    assert.deepEqual(works, { ...Object.fromEntries(cl.names.map((n) => [`login@${n}`, true])), queueRoundTrip: true, mqttAfter: true, sendAfter: true });
  } catch (err) {
    printProblems(cl, 30, { t, scenario: label, ledgers: [mqttLedger, miaLedger, olafLedger], err, extra: { phasesMs: phases, subscriberServerCloses: sub.serverCloses, mailboxDisconnects: mailbox.disconnects } });
    throw err;
  } finally {
    pub.stop();
    sendsStop = true;
    await streaming?.catch(() => undefined);
    await sender.catch(() => undefined);
    await pub.close();
    await sub.disconnect();
    mailbox.close();
    // If the scenario failed half-way, leave PostgreSQL running for the after hook.
    await cl.startPg().catch(() => undefined);
  }
}
