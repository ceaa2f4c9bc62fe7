import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics, timedStore } from '../../src/core/metrics.js';
import { domainsOf } from '../../src/store/compose.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

describe('Store composition (domainsOf)', () => {
  const counter = (handle: { start: number }) => {
    let n = handle.start;
    return { next: () => ++n };
  };
  const greeter = (handle: { name: string }) => ({ greet: () => `hello ${handle.name}` });

  it('builds each domain over the handle and puts its methods on the instance', () => {
    class Both extends domainsOf(counter, greeter) {
      readonly extra = 1;
    }
    const both = new Both({ start: 41, name: 'herald' });
    assert.equal(both.next(), 42);
    const { greet } = both;
    assert.equal(greet(), 'hello herald', 'a method needs no `this`');
    assert.deepEqual(Object.keys(both).sort(), ['extra', 'greet', 'next']);
  });

  it('refuses two domains that define the same method', () => {
    const again = (handle: { start: number }) => ({ next: () => handle.start });
    const Clash = domainsOf(counter, again);
    assert.throws(() => new Clash({ start: 0 }), /store domains clash: again defines next again/);
  });

  it('lets timedStore time every call of an engine by its method name', async () => {
    const metrics = new Metrics();
    const store = timedStore(new SqliteStore({ dataDir: ':memory:' }), metrics);
    try {
      await store.createUser({ name: 'a', role: 'user', passwordHash: 'h', createdAt: 1 });
      assert.equal(await store.countUsers(), 1);
      const text = await metrics.registry.metrics();
      assert.match(text, /herald_store_seconds_count\{op="createUser"\} 1/);
      assert.match(text, /herald_store_seconds_count\{op="countUsers"\} 1/);
    } finally {
      await store.close();
    }
  });
});
