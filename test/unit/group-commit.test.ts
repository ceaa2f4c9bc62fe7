/**
 * SQLite group commit: writes asked for in one event-loop turn share one
 * transaction; each resolves only after the commit; a write that fails is
 * undone alone; a failure that ends the transaction (the database full)
 * fails every write of the group and stores none of them.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { GroupCommit } from '../../src/store/sqlite/group-commit.js';
import { tempDir } from '../helpers/server.js';

function open(): { db: Database.Database; dir: string } {
  const dir = tempDir('herald-group-');
  const db = new Database(join(dir, 'g.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)');
  return { db, dir };
}

describe('SQLite group commit', () => {
  it('commits the writes of one turn together, each resolving after the commit', async () => {
    const { db, dir } = open();
    const g = new GroupCommit(db);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const all = Array.from({ length: 100 }, (_, i) => g.run(() => Number(insert.run(`v${i}`).lastInsertRowid)));
    assert.equal((db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n, 0, 'nothing runs before the turn ends');
    const ids = await Promise.all(all);
    assert.deepEqual(ids, Array.from({ length: 100 }, (_, i) => i + 1), 'in the order asked');
    assert.equal(g.commits, 1);
    assert.equal(g.writes, 100);
    await g.run(() => insert.run('later'));
    assert.equal(g.commits, 2, 'a later turn is another group');
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('undoes a failing write alone: the others of its group are stored', async () => {
    const { db, dir } = open();
    const g = new GroupCommit(db);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const results = await Promise.allSettled([
      g.run(() => insert.run('a')),
      g.run(() => {
        insert.run('b');
        insert.run('a'); // UNIQUE violation: this write (b and its duplicate a) is undone
      }),
      g.run(() => insert.run('c')),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual(db.prepare('SELECT v FROM t ORDER BY id').all().map((r) => (r as { v: string }).v), ['a', 'c']);
    assert.equal(g.commits, 1);
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a write failing late in a large group is undone alone; the group is written again with a savepoint per write', async () => {
    const { db, dir } = open();
    const g = new GroupCommit(db);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const runs = new Array<number>(200).fill(0);
    const results = await Promise.allSettled(
      runs.map((_, i) =>
        g.run(() => {
          runs[i]!++;
          insert.run(`v${i}`);
          if (i === 198) insert.run('v0'); // after its own row: UNIQUE violation
          return i;
        }),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      runs.map((_, i) => (i === 198 ? 'rejected' : 'fulfilled')),
    );
    const stored = db.prepare('SELECT v FROM t ORDER BY id').all().map((r) => (r as { v: string }).v);
    assert.equal(stored.length, 199);
    assert.ok(!stored.includes('v198'), 'the failing write is undone whole, its first row too');
    assert.equal(g.commits, 1, 'still one commit');
    assert.ok(runs.every((n, i) => n === (i <= 198 ? 2 : 1)), `writes up to the failing one run twice, the rest once: ${runs.join('')}`);
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a full database fails every write of the group, and none is stored', async () => {
    const { db, dir } = open();
    db.prepare('INSERT INTO t (v) VALUES (?)').run('seed');
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);
    const g = new GroupCommit(db);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const big = 'x'.repeat(8000);
    const results = await Promise.allSettled([g.run(() => insert.run('small')), g.run(() => insert.run(big + '1')), g.run(() => insert.run(big + '2'))]);
    assert.ok(results.every((r) => r.status === 'rejected'), JSON.stringify(results.map((r) => r.status)));
    assert.match(String((results[1] as PromiseRejectedResult).reason), /full/i);
    assert.deepEqual(db.prepare('SELECT v FROM t').all().map((r) => (r as { v: string }).v), ['seed'], 'not even the small write that came first');
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('flush() commits what is queued at once (before the database closes)', async () => {
    const { db, dir } = open();
    const g = new GroupCommit(db);
    const p = g.run(() => db.prepare('INSERT INTO t (v) VALUES (?)').run('x'));
    g.flush();
    await p;
    db.close();
    await assert.rejects(g.run(() => 1), /closed/);
    rmSync(dir, { recursive: true, force: true });
  });
});
