/**
 * Group commit of message-service sends on PostgreSQL (src/store/postgres/message-groups.ts):
 * sends made together are written by one statement and resolve after its commit; a send
 * PostgreSQL refuses fails alone (the others are written again, each alone); a database
 * lost in the middle of a group fails every send of it, and none of them is stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { PgMessageGroups } from '../../src/store/postgres/message-groups.js';
import { insertMessageAlone } from '../../src/store/postgres/messages.js';
import { openPool, pgHandle, type PgHandle } from '../../src/store/postgres/pool.js';
import { StoreUnavailableError } from '../../src/store/errors.js';
import type { NewMessage } from '../../src/store/messages.js';
import { freshDatabase, servicesMissing } from '../helpers/services.js';

const message = (title: string, receivers = ['u1'], content = 'c'): NewMessage => ({ sender: 's', title, content, type: '0', createdAt: 5, receivers });

describe('PostgreSQL group commit of message sends', { skip: servicesMissing('pg') }, () => {
  let url: string;
  let pool: pg.Pool;
  let handle: PgHandle;
  let alone: number;
  let groups: PgMessageGroups;
  const titles = async (): Promise<string[]> => (await pool.query<{ title: string }>('SELECT title FROM messages ORDER BY id')).rows.map((r) => r.title);

  before(async () => {
    url = await freshDatabase();
    await (await PostgresStore.open({ connectionString: url, poolSize: 2 })).close(); // the schema
    pool = openPool({ connectionString: url, poolSize: 4 });
    handle = pgHandle(pool);
  });
  after(async () => {
    await pool.end();
  });
  const fresh = async (): Promise<void> => {
    await pool.query('TRUNCATE messages, message_receivers, webhook_events');
    alone = 0;
    groups = new PgMessageGroups(handle, (m, events) => {
      alone++;
      return insertMessageAlone(handle, m, events);
    });
  };

  it('writes the sends of one turn in one group, each resolving with its own id once committed', async () => {
    await fresh();
    const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => groups.insert(message(`t${i}`, [`r${i}`, 'all']), undefined)));
    assert.equal(groups.groups, 1);
    assert.equal(groups.sends, 30);
    assert.equal(alone, 0);
    const rows = (await pool.query<{ id: number; title: string }>('SELECT id, title FROM messages')).rows;
    assert.deepEqual(
      ids.map((id) => rows.find((r) => String(r.id) === id)?.title),
      ids.map((_, i) => `t${i}`),
      'each id is its own message',
    );
    const receivers = (await pool.query<{ message_id: number; receiver: string }>('SELECT message_id, receiver FROM message_receivers')).rows;
    assert.equal(receivers.length, 60);
    for (const [i, id] of ids.entries()) {
      assert.deepEqual(receivers.filter((r) => String(r.message_id) === id).map((r) => r.receiver).sort(), ['all', `r${i}`]);
    }
  });

  it('writes at most two groups at once: sends made meanwhile wait and go in the next', async () => {
    await fresh();
    let now = 0;
    let most = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held: PgHandle = {
      ...handle,
      direct: {
        // Every group statement waits at the gate until all the sends are made.
        query: async (text, params) => {
          most = Math.max(most, ++now);
          try {
            await gate;
            return await handle.direct.query(text, params);
          } finally {
            now--;
          }
        },
      },
    };
    groups = new PgMessageGroups(held, (m, events) => insertMessageAlone(handle, m, events));
    const sends: Promise<string>[] = [];
    for (let i = 0; i < 8; i++) {
      sends.push(groups.insert(message(`m${i}`), undefined));
      await new Promise((r) => setImmediate(r)); // each in a turn of its own
    }
    assert.equal(most, 2, 'two groups under way, the other sends waiting');
    release();
    await Promise.all(sends);
    assert.equal(most, 2);
    assert.equal(groups.groups, 3, 'm0 and m1 alone, then the six that waited together');
    assert.deepEqual((await titles()).sort(), Array.from({ length: 8 }, (_, i) => `m${i}`));
  });

  it('fails a send PostgreSQL refuses alone: the others are stored, each after its own commit', async () => {
    await fresh();
    const results = await Promise.allSettled([
      groups.insert(message('a'), undefined),
      groups.insert(message('bad', ['u1'], 'a NUL byte \u0000 is not text to PostgreSQL'), undefined),
      groups.insert(message('b', ['u2']), undefined),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /0x00/);
    assert.equal(alone, 3, 'the group failed whole, and each send was written again alone');
    assert.deepEqual(await titles(), ['a', 'b']);
    for (const r of results) {
      if (r.status === 'fulfilled') assert.equal((await pool.query('SELECT 1 FROM messages WHERE id = $1', [r.value])).rowCount, 1, 'acknowledged means stored');
    }
  });

  it('writes the webhook events of a group with it, each naming its own message', async () => {
    await fresh();
    const ev = (id: string) => [{ eventId: `e${id}`, webhook: 'w', type: 'message.undelivered', orderKey: 'user:u1', body: JSON.stringify({ id }), createdAt: 1 }];
    const ids = await Promise.all([groups.insert(message('a'), ev), groups.insert(message('b'), undefined), groups.insert(message('c'), ev)]);
    assert.equal(groups.groups, 1);
    const bodies = (await pool.query<{ body: string }>('SELECT body FROM webhook_events ORDER BY id')).rows.map((r) => (JSON.parse(r.body) as { id: string }).id);
    assert.deepEqual(bodies, [ids[0], ids[2]]);
  });

  it('a group whose events cannot be written stores none of its messages', async () => {
    await fresh();
    const refused = () => [{ eventId: 'e', webhook: 'w', type: 'message.undelivered', orderKey: 'k', body: '{"nul":"\u0000"}', createdAt: 1 }];
    const results = await Promise.allSettled([groups.insert(message('a'), refused), groups.insert(message('b'), undefined)]);
    // The group's transaction failed on a's event (after the messages were written): alone, b is stored and a fails again.
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'fulfilled']);
    assert.equal(alone, 2);
    assert.deepEqual(await titles(), ['b']);
    assert.equal((await pool.query('SELECT 1 FROM webhook_events')).rowCount, 0);
  });

  it('a database lost in the middle of a group fails every send of it, and stores none', async () => {
    await fresh();
    // The backend writing the group ends itself when it meets the message titled "die".
    await pool.query(`CREATE OR REPLACE FUNCTION herald_test_die() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.title = 'die' THEN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); END IF; RETURN NEW; END $$`);
    await pool.query('CREATE TRIGGER herald_test_die BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION herald_test_die()');
    try {
      const results = await Promise.allSettled([groups.insert(message('a'), undefined), groups.insert(message('die'), undefined), groups.insert(message('b'), undefined)]);
      assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
      for (const r of results) assert.ok((r as PromiseRejectedResult).reason instanceof StoreUnavailableError, String((r as PromiseRejectedResult).reason));
      assert.equal(alone, 0, 'not written again one by one: the database is not there');
      assert.deepEqual(await titles(), [], 'none of the group is stored');
    } finally {
      await pool.query('DROP TRIGGER herald_test_die ON messages');
    }
  });
});
