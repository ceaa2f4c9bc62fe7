/**
 * The thread service's memory of "is this topic a thread?" is bounded in
 * bytes: publishing to many distinct long topics must not pin memory for
 * good (an outside test grew RSS by 700 MB with 12,000 topics of 60 KB).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { ThreadService } from '../../src/apps/threads.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { Broker } from '../../src/core/broker.js';
import type { Store } from '../../src/store/store.js';

function service(): { threads: ThreadService; reads: () => number } {
  let reads = 0;
  // Only what publishRefusal reaches: a store that knows no thread and counts its reads.
  const store = { getThread: async () => (reads++, null) } as unknown as Store;
  const log = pino({ level: 'silent' });
  const broker = new Broker(store, log, { queueMemoryMessages: 10, parkedPerUser: 10, maxRedeliveries: 1 });
  const threads = new ThreadService(store, broker, loadConfig({ env: {}, overrides: {} }), systemClock, log);
  return { threads, reads: () => reads };
}

describe('thread topic cache', () => {
  it('remembers ordinary topics, so a publisher costs one store read per topic', async () => {
    const { threads, reads } = service();
    for (let i = 0; i < 5; i++) assert.equal(await threads.publishRefusal('news/sport'), undefined);
    assert.equal(reads(), 1);
  });

  it('forgets everything once the topic names it holds pass 8 M characters, rather than grow', async () => {
    const { threads, reads } = service();
    await threads.publishRefusal('news/sport');
    const long = 'x'.repeat(60_000);
    for (let i = 0; i < 150; i++) await threads.publishRefusal(`${long}/${i}`); // 9 M characters of names
    const before = reads();
    await threads.publishRefusal('news/sport');
    assert.equal(reads(), before + 1, 'the early topic was forgotten when the cache started again');
  });
});
