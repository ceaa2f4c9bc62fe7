/**
 * Group commit for SQLite: writes asked for in the same event-loop turn
 * share one transaction, so one fsync (synchronous=FULL) covers them all.
 *
 * better-sqlite3 is synchronous: while a commit waits for the disk, the
 * event loop waits too, and the requests that arrive meanwhile are read
 * together in the next turn. Each write queued in that turn runs in its own
 * savepoint inside one transaction (a write that fails rolls back alone and
 * rejects alone), and every promise resolves only after the COMMIT, so a
 * caller that acknowledges after awaiting still acknowledges only what is
 * on disk. A COMMIT that fails (disk full, I/O error) rejects every write of
 * the group: none of them is stored.
 *
 * Most groups have no failing write, so a group first runs without the
 * savepoints (two statements fewer per write); if any write of it throws,
 * that transaction is rolled back whole and the group runs again, each write
 * in its own savepoint as above. A write may therefore run twice: it must
 * only run statements and compute from them (what a rollback undoes).
 */
import type Database from 'better-sqlite3';

interface Pending {
  work: () => unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** Most writes in one transaction (a long group delays its first writer's answer). */
const MAX_GROUP = 512;

export class GroupCommit {
  private queue: Pending[] = [];
  private scheduled = false;
  /** Transactions committed, and writes in them (tests and the benchmark read them). */
  commits = 0;
  writes = 0;

  constructor(private readonly db: Database.Database) {}

  /** Runs `work` (synchronous statements) in the next group's transaction; resolves after that transaction commits. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits what is queued now (before the database closes). */
  flush(): void {
    this.scheduled = false;
    while (this.queue.length > 0) {
      const group = this.queue.length <= MAX_GROUP ? this.queue : this.queue.slice(0, MAX_GROUP);
      this.queue = this.queue.length <= MAX_GROUP ? [] : this.queue.slice(MAX_GROUP);
      this.commit(group);
    }
  }

  private commit(group: Pending[]): void {
    if (!this.db.open) {
      const closed = new Error('the database is closed');
      for (const p of group) p.reject(closed);
      return;
    }
    let values: unknown[] | undefined;
    let outcomes: Outcome[] | undefined;
    try {
      values = this.db.inTransaction ? undefined : this.optimistic(group);
      if (values === undefined) outcomes = this.careful(group);
    } catch (err) {
      for (const p of group) p.reject(err);
      return;
    }
    this.commits++;
    this.writes += group.length;
    if (values !== undefined) {
      for (let i = 0; i < group.length; i++) group[i]!.resolve(values[i]);
      return;
    }
    group.forEach((p, i) => {
      const o = outcomes![i]!;
      if (o.ok) p.resolve(o.value);
      else p.reject(o.err);
    });
  }

  /**
   * Every write of the group in one transaction, no savepoints: their values,
   * committed; or undefined when a write threw (the transaction is rolled back,
   * nothing of it stored, for the careful run). Throws when the COMMIT fails.
   */
  private optimistic(group: Pending[]): unknown[] | undefined {
    const s = this.statements();
    const values: unknown[] = new Array(group.length);
    s.begin.run();
    try {
      for (let i = 0; i < group.length; i++) values[i] = group[i]!.work();
    } catch {
      if (this.db.inTransaction) s.rollback.run();
      return undefined;
    }
    try {
      s.commit.run();
    } catch (err) {
      if (this.db.inTransaction) s.rollback.run();
      throw err;
    }
    return values;
  }

  /** The group again, each write in its own savepoint: a write that fails is undone alone. Throws when the transaction fails. */
  private careful(group: Pending[]): Outcome[] {
    const s = this.statements();
    const outcomes: Outcome[] = [];
    this.db.transaction(() => {
      for (const p of group) {
        s.savepoint.run();
        try {
          const value = p.work();
          s.release.run();
          outcomes.push({ ok: true, value });
        } catch (err) {
          // Some errors (SQLITE_FULL, I/O errors) make SQLite roll back the whole transaction: then
          // nothing of the group is stored, and every write of it fails (in commit) rather than commit alone.
          if (!this.db.inTransaction) throw err;
          s.rollbackTo.run();
          s.release.run();
          outcomes.push({ ok: false, err });
        }
      }
    })();
    return outcomes;
  }

  /** The transaction statements, prepared once (better-sqlite3's db.transaction() per write cost more than the write). */
  private statements(): Statements {
    this.prepared ??= {
      begin: this.db.prepare('BEGIN'),
      commit: this.db.prepare('COMMIT'),
      rollback: this.db.prepare('ROLLBACK'),
      savepoint: this.db.prepare('SAVEPOINT herald_group_write'),
      release: this.db.prepare('RELEASE herald_group_write'),
      rollbackTo: this.db.prepare('ROLLBACK TO herald_group_write'),
    };
    return this.prepared;
  }
  private prepared: Statements | undefined;
}

type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };

interface Statements {
  begin: Database.Statement;
  commit: Database.Statement;
  rollback: Database.Statement;
  savepoint: Database.Statement;
  release: Database.Statement;
  rollbackTo: Database.Statement;
}

const groups = new WeakMap<Database.Database, GroupCommit>();

/** The one group commit of a database connection. */
export function groupCommitOf(db: Database.Database): GroupCommit {
  let g = groups.get(db);
  if (!g) {
    g = new GroupCommit(db);
    groups.set(db, g);
  }
  return g;
}
