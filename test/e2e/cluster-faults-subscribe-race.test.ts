/**
 * Issue 12, cluster under faults: a message sent on another node right after
 * the subscription was confirmed. The RECEIPT of a SUBSCRIBE (MQTT: the
 * SUBACK) promises the subscription is in place, cluster-wide; a message sent
 * on another node once it is in hand must arrive. 100 rounds, each needing a
 * new route between the nodes (a fresh topic or queue; a user's first
 * subscription on the node).
 *
 * Each runs twice: with Redis idle, and with Redis busy (a client keeps it
 * blocked a few milliseconds at a time, as load does). On loopback an idle
 * Redis almost always reads the subscribing node's SUBSCRIBE before the other
 * node's PUBLISH, whether or not the node waited for Redis to confirm it; a
 * busy one serves the two together, so only a confirmation awaited before the
 * RECEIPT/SUBACK keeps every round.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import type mqttPacket from 'mqtt-packet';
import { FaultCluster, faultServicesMissing } from '../helpers/fault-cluster.js';
import { ADMIN_STOMP, Ledger, StompPeer, mqttClient, printProblems, report } from '../helpers/fault-clients.js';
import { header } from '../../src/protocols/stomp/codec.js';

const skip = faultServicesMissing();
const ROUNDS = 100;

describe('cluster under faults: a send on another node right after the subscription is confirmed', { skip, timeout: 600_000 }, () => {
  let cl: FaultCluster;
  const users: { name: string; token: string }[] = [];
  before(async () => {
    cl = await FaultCluster.start();
    const admin = await cl.login('a');
    const run = randomBytes(3).toString('hex');
    for (let i = 0; i < ROUNDS; i += 10) {
      users.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => cl.addUser(admin, `race${run}u${i + j}`)))));
    }
  });
  after(async () => {
    await cl?.stop();
  });

  /** Runs `rounds` (with Redis busy or not), then checks that every acknowledged round arrived within `settleMs`. */
  async function scenario(t: TestContext, name: string, busy: boolean, settleMs: number, rounds: (ledger: Ledger) => Promise<() => void>): Promise<void> {
    const ledger = new Ledger(name);
    const load = busy ? cl.busyRedis() : undefined;
    let close: (() => void) | undefined;
    try {
      close = await rounds(ledger);
      const redis = await load?.stop();
      await ledger.settle(settleMs);
      const lost = ledger.missing().map((k) => Number(k.split(':')[1]));
      report(t, cl, `subscribe-race-${name}${busy ? '-busy-redis' : ''}`, [ledger], { rounds: ROUNDS, lost: lost.length, lostRounds: lost.slice(0, 30), ...(redis ? { redis } : {}) });
      assert.deepEqual(lost, [], `rounds whose message never reached the subscriber (of ${ROUNDS})`);
      assert.equal(ledger.counts().unflaggedDuplicates, 0, 'duplicates');
      assert.deepEqual(cl.unexpectedExits, [], 'node exits');
    } catch (err) {
      printProblems(cl, 30, { t, scenario: `subscribe-race-${name}${busy ? '-busy-redis' : ''}`, ledgers: [ledger], err });
      throw err;
    } finally {
      await load?.stop();
      close?.();
    }
  }

  for (const busy of [false, true]) {
    const redis = busy ? 'Redis busy' : 'Redis idle';

    it(`STOMP /topic/ (${redis}): SUBSCRIBE on a, on its RECEIPT a SEND on b; ${ROUNDS} rounds, nothing lost`, (t) =>
      scenario(t, 'stomp-topic', busy, 3000, async (ledger) => {
        const run = randomBytes(3).toString('hex');
        const sub = await StompPeer.open(cl, 'a', ADMIN_STOMP);
        const send = await StompPeer.open(cl, 'b', ADMIN_STOMP);
        sub.on((f) => f.command === 'MESSAGE' && ledger.receive('sub@a', f.body.toString(), header(f, 'redelivered') === 'true', false));
        for (let i = 0; i < ROUNDS; i++) {
          const destination = `/topic/faults.race.${run}.s${i}`;
          await sub.request('SUBSCRIBE', { id: `s${i}`, destination });
          ledger.sent++;
          await send.request('SEND', { destination }, `round:${i}`);
          ledger.ack(`round:${i}`);
        }
        return () => (sub.close(), send.close());
      }));

    it(`STOMP /queue/ (${redis}): SUBSCRIBE to a fresh queue on a, on its RECEIPT a SEND on b; ${ROUNDS} rounds, nothing lost`, (t) =>
      scenario(t, 'stomp-queue', busy, 5000, async (ledger) => {
        const run = randomBytes(3).toString('hex');
        const sub = await StompPeer.open(cl, 'a', ADMIN_STOMP);
        const send = await StompPeer.open(cl, 'b', ADMIN_STOMP);
        sub.on((f) => {
          if (f.command !== 'MESSAGE') return;
          ledger.receive('sub@a', f.body.toString(), header(f, 'redelivered') === 'true', false);
          sub.frame('ACK', { id: header(f, 'ack') ?? '' });
        });
        for (let i = 0; i < ROUNDS; i++) {
          const destination = `/queue/faults.race.${run}.q${i}`;
          await sub.request('SUBSCRIBE', { id: `q${i}`, destination, ack: 'client-individual' });
          ledger.sent++;
          await send.request('SEND', { destination }, `round:${i}`);
          ledger.ack(`round:${i}`);
        }
        return () => (sub.close(), send.close());
      }));

    it(`STOMP /user/queue/ (${redis}): a user's first SUBSCRIBE on a, on its RECEIPT a service SEND to that user on b; ${ROUNDS} users, nothing lost`, (t) =>
      scenario(t, 'stomp-mailbox', busy, 3000, async (ledger) => {
        const send = await StompPeer.open(cl, 'b', ADMIN_STOMP);
        const subs: StompPeer[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          const u = users[i]!;
          const sub = await StompPeer.open(cl, 'a', { login: u.token });
          subs.push(sub);
          sub.on((f) => f.command === 'MESSAGE' && ledger.receive(u.name, f.body.toString(), header(f, 'redelivered') === 'true', false));
          await sub.request('SUBSCRIBE', { id: 'm', destination: '/user/queue/race' });
          ledger.sent++;
          await send.request('SEND', { destination: `/user/${u.name}/queue/race` }, `round:${i}`);
          ledger.ack(`round:${i}`);
        }
        return () => {
          for (const s of subs) s.close();
          send.close();
        };
      }));

    it(`MQTT (${redis}): SUBSCRIBE on a, on its SUBACK a QoS 1 PUBLISH on b; ${ROUNDS} rounds, nothing lost`, (t) =>
      scenario(t, 'mqtt', busy, 3000, async (ledger) => {
        const run = randomBytes(3).toString('hex');
        const sub = await mqttClient(cl, 'a', { protocolVersion: 4 });
        const pub = await mqttClient(cl, 'b', { protocolVersion: 4 });
        sub.on('message', (_t, payload, packet: mqttPacket.IPublishPacket) => ledger.receive('sub@a', payload.toString(), packet.dup === true, false));
        for (let i = 0; i < ROUNDS; i++) {
          const topic = `faults/race/${run}/m${i}`;
          const granted = await sub.subscribeAsync(topic, { qos: 1 });
          assert.equal(granted[0]?.qos, 1);
          ledger.sent++;
          await pub.publishAsync(topic, `round:${i}`, { qos: 1 });
          ledger.ack(`round:${i}`);
        }
        return () => (sub.end(true), pub.end(true));
      }));
  }
});
