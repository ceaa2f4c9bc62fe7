/**
 * Issue 12, cluster under faults: message-service sends during a 5 s Redis
 * outage. Sends go over HTTP to node a for users online on other nodes (STOMP
 * /user/queue/messages on b, the JSON WebSocket on c) and for one offline.
 * Each acknowledged send (HTTP 200) is stored; once Redis is back the online
 * sessions must get every one of them within a few seconds without
 * reconnecting, and the offline user on connecting.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FaultCluster, faultServicesMissing, sleep } from '../helpers/fault-cluster.js';
import { JsonMailboxReceiver, Ledger, MailboxReceiver, printProblems, report, sendMessage } from '../helpers/fault-clients.js';

const skip = faultServicesMissing();
const DOWN_MS = 5000;
/** "Within a few seconds" of the cluster being ready again. */
const CATCH_UP_MS = 10_000;

describe('cluster under faults: message-service sends during a Redis outage', { skip, timeout: 600_000 }, () => {
  let cl: FaultCluster;
  before(async () => {
    cl = await FaultCluster.start();
  });
  after(async () => {
    await cl?.stop();
  });

  it('online sessions on other nodes get every acknowledged send without reconnecting; offline users get them on connect', async (t) => {
    const admin = await cl.login('a');
    const mia = await cl.addUser(admin, 'mia');
    const jon = await cl.addUser(admin, 'jon');
    const olaf = await cl.addUser(admin, 'olaf');
    const miaLedger = new Ledger('stomp-online@b');
    const jonLedger = new Ledger('json-online@c');
    const olafLedger = new Ledger('offline');
    const ledgers = [miaLedger, jonLedger, olafLedger];
    const miaBox = new MailboxReceiver(cl, miaLedger, mia);
    const jonBox = new JsonMailboxReceiver(cl, jonLedger, jon);
    const olafBox = new MailboxReceiver(cl, olafLedger, olaf);
    let stop = false;
    const statuses = new Map<number, number>();
    const phases: Record<string, number> = {};
    const t0 = Date.now();
    const sender = async (): Promise<void> => {
      for (let seq = 0; !stop; seq++) {
        const key = `ms:${seq}`;
        for (const l of ledgers) l.sent++;
        const status = await sendMessage(cl, 'a', admin, [mia.id, jon.id, olaf.id], key);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        for (const l of ledgers) {
          if (status === 200) l.ack(key);
          else l.refused++;
        }
        await sleep(150);
      }
    };
    let sending: Promise<void> | undefined;
    try {
      await miaBox.connect('b');
      await jonBox.connect('c');
      sending = sender();
      await sleep(2000);
      phases['redisStoppedAt'] = Date.now() - t0;
      await cl.restartRedis(DOWN_MS);
      phases['redisStartedAt'] = Date.now() - t0;
      await cl.waitReady(30_000);
      const readyAt = Date.now();
      phases['readyAgainAt'] = readyAt - t0;
      await sleep(2000);
      stop = true;
      await sending;
      phases['sendsStoppedAt'] = Date.now() - t0;
      await miaLedger.settle(Math.max(0, CATCH_UP_MS - (Date.now() - readyAt)));
      await jonLedger.settle(Math.max(0, CATCH_UP_MS - (Date.now() - readyAt)));
      const onlineMissing = { stomp: miaLedger.missing().length, json: jonLedger.missing().length };
      phases['onlineCheckedAt'] = Date.now() - t0;
      await olafBox.connect('b');
      await olafLedger.settle(10_000);

      report(t, cl, 'redis-outage-message-service', ledgers, {
        phasesMs: phases,
        httpStatuses: Object.fromEntries(statuses),
        onlineMissingAfterCatchUp: onlineMissing,
        stompDisconnects: miaBox.disconnects,
        jsonCloses: jonBox.closes,
      });
      assert.deepEqual(miaBox.disconnects, [], 'the STOMP session on b was disconnected');
      assert.deepEqual(jonBox.closes, [], 'the JSON WebSocket session on c was closed');
      assert.ok(miaLedger.acked.size > 0, 'sends were acknowledged');
      for (const l of ledgers) {
        assert.equal(l.counts().ackedMissing, 0, `${l.label}: acknowledged but never received`);
        assert.equal(l.counts().unflaggedDuplicates, 0, `${l.label}: duplicates without the redelivered mark`);
      }
      assert.deepEqual(cl.unexpectedExits, [], 'node exits');
    } catch (err) {
      printProblems(cl, 30, { t, scenario: 'redis-outage-message-service', ledgers, err, extra: { phasesMs: phases } });
      throw err;
    } finally {
      stop = true;
      await sending?.catch(() => undefined);
      miaBox.close();
      jonBox.close();
      olafBox.close();
    }
  });
});
