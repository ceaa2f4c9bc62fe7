/**
 * The Bus contract, one suite for every implementation (memory, Redis).
 */
import assert from 'node:assert/strict';
import { describe, it, afterEach } from 'node:test';
import { globEscape, type Bus } from '../../src/bus/bus.js';

export interface BusFactory {
  /** Nodes of one fresh cluster. */
  cluster(n: number): Promise<Bus[]>;
  /** A new node of the last cluster under an existing node's name (a restarted process). */
  sameName(nodeId: string): Promise<Bus>;
}

type Got = [channel: string, body: string][];

function collect(bus: Bus): Got {
  const got: Got = [];
  bus.setHandler((channel, payload) => got.push([channel, payload.toString()]));
  return got;
}

/** Waits until `cond` holds (the Redis bus is asynchronous), or fails after 3 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Lets in-flight messages arrive (nothing more should). */
const settle = () => new Promise((r) => setTimeout(r, 150));

export function busSuite(name: string, factory: BusFactory, skip: string | false = false): void {
  describe(`Bus contract: ${name}`, { skip }, () => {
    let buses: Bus[] = [];
    afterEach(async () => {
      for (const b of buses) await b.close();
      buses = [];
    });
    const open = async (n: number) => (buses = await factory.cluster(n));
    const ready = (bs: Bus[]) => until(() => bs.every((b) => b.connected), 'the bus to connect');

    it('delivers to subscribed nodes only, never back to the sender', async () => {
      const [a, b, c] = await open(3);
      const [ga, gb, gc] = [collect(a!), collect(b!), collect(c!)];
      await ready(buses);
      a!.subscribe('t:x');
      b!.subscribe('t:x');
      await settle();
      a!.publish('t:x', Buffer.from('from a'));
      await until(() => gb.length === 1, 'b to receive');
      await settle();
      assert.deepEqual(gb, [['t:x', 'from a']]);
      assert.deepEqual(ga, [], 'the sender does not hear itself');
      assert.deepEqual(gc, [], 'a node without the subscription gets nothing');
    });

    it('matches patterns, escapes literal parts, and delivers once when several subscriptions match', async () => {
      const [a, b] = await open(2);
      const gb = collect(b!);
      await ready(buses);
      b!.psubscribe('t:' + globEscape('sensor[1]') + '/*');
      b!.psubscribe('t:*');
      b!.subscribe('t:sensor[1]/temp');
      await settle();
      a!.publish('t:sensor[1]/temp', Buffer.from('1'));
      a!.publish('t:sensor1/temp', Buffer.from('2'));
      a!.publish('u:7', Buffer.from('3'));
      await until(() => gb.length >= 2, 'b to receive');
      await settle();
      assert.deepEqual(gb, [['t:sensor[1]/temp', '1'], ['t:sensor1/temp', '2']]);
    });

    it('keeps the order of one sender and carries binary payloads intact', async () => {
      const [a, b] = await open(2);
      const gb: Buffer[] = [];
      b!.setHandler((_c, p) => gb.push(Buffer.from(p)));
      await ready(buses);
      b!.subscribe('q:jobs');
      await settle();
      for (let i = 0; i < 200; i++) a!.publish('q:jobs', Buffer.from([i & 255, 0, 255, 10]));
      await until(() => gb.length === 200, '200 messages');
      assert.deepEqual(gb.map((p) => p[0]), Array.from({ length: 200 }, (_, i) => i & 255));
      assert.ok(gb.every((p) => p.length === 4 && p[1] === 0 && p[2] === 255 && p[3] === 10));
    });

    it('hears a node restarted under the same name at once, though it counts from 0 again', async () => {
      const [a, b] = await open(2);
      const gb = collect(b!);
      await ready(buses);
      b!.subscribe('t:x');
      await settle();
      for (let i = 0; i < 20; i++) a!.publish('t:x', Buffer.from(`old ${i}`));
      await until(() => gb.length === 20, 'the old incarnation to be heard');
      await a!.close();
      const again = await factory.sameName(a!.nodeId);
      buses.push(again);
      await ready([again]);
      for (let i = 0; i < 5; i++) again.publish('t:x', Buffer.from(`new ${i}`));
      await until(() => gb.length === 25, 'the new incarnation to be heard');
      assert.deepEqual(gb.slice(20).map(([, body]) => body), ['new 0', 'new 1', 'new 2', 'new 3', 'new 4']);
    });

    it('stops delivering after unsubscribe and punsubscribe', async () => {
      const [a, b] = await open(2);
      const gb = collect(b!);
      await ready(buses);
      b!.subscribe('u:1');
      b!.psubscribe('t:a/*');
      await settle();
      a!.publish('u:1', Buffer.from('x'));
      a!.publish('t:a/b', Buffer.from('y'));
      await until(() => gb.length === 2, 'both');
      b!.unsubscribe('u:1');
      b!.punsubscribe('t:a/*');
      await settle();
      a!.publish('u:1', Buffer.from('late'));
      a!.publish('t:a/b', Buffer.from('late'));
      await settle();
      assert.equal(gb.length, 2);
    });
  });
}
