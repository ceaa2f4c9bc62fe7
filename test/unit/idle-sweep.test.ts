/** The shared idle sweep (MQTT keep-alive): one timer checks every watched item and drops the ones that end. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdleSweep } from '../../src/transports/idle-sweep.js';

interface Item {
  name: string;
  deadline: number;
  closed: boolean;
}

describe('IdleSweep', () => {
  it('checks every watched item with the same time, and drops those that answer false', () => {
    const seen: string[] = [];
    const sweep = new IdleSweep<Item>(
      (item, now) => {
        seen.push(`${item.name}@${now}`);
        if (now > item.deadline) item.closed = true;
        return !item.closed;
      },
      () => assert.fail('no check throws here'),
    );
    const a = { name: 'a', deadline: 1500, closed: false };
    const b = { name: 'b', deadline: 3000, closed: false };
    sweep.watch(a);
    sweep.watch(b);
    sweep.sweep(1000);
    assert.deepEqual(seen, ['a@1000', 'b@1000']);
    sweep.sweep(2000);
    assert.equal(a.closed, true);
    assert.equal(b.closed, false);
    assert.equal(sweep.size, 1, 'a, cut, is no longer watched');
    seen.length = 0;
    sweep.sweep(2500);
    assert.deepEqual(seen, ['b@2500']);
    sweep.unwatch(b);
    assert.equal(sweep.size, 0);
  });

  it('an item whose check throws is reported and dropped; the others are still checked', () => {
    const errors: string[] = [];
    const sweep = new IdleSweep<Item>(
      (item) => {
        if (item.name === 'bad') throw new Error('broken');
        return true;
      },
      (err, item) => errors.push(`${item.name}: ${(err as Error).message}`),
    );
    const bad = { name: 'bad', deadline: 0, closed: false };
    const good = { name: 'good', deadline: 0, closed: false };
    sweep.watch(bad);
    sweep.watch(good);
    sweep.sweep(1);
    assert.deepEqual(errors, ['bad: broken']);
    assert.equal(sweep.size, 1);
    sweep.unwatch(good);
  });

  it('its timer runs while something is watched, and finds a silent item within one period', async () => {
    const item = { name: 'x', deadline: Date.now() + 50, closed: false };
    let cutAt = 0;
    const sweep = new IdleSweep<Item>(
      (i, now) => {
        if (now > i.deadline) {
          i.closed = true;
          cutAt = now;
        }
        return !i.closed;
      },
      () => undefined,
      40,
    );
    sweep.watch(item);
    const deadline = Date.now() + 2000;
    while (!item.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(item.closed, true, 'cut by the timer');
    assert.ok(cutAt > item.deadline, 'not before its deadline');
    assert.equal(sweep.size, 0, 'nothing is watched, so the timer stopped');
  });
});
