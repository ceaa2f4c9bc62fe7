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
    const outcomes: ({ ok: true; value: unknown } | { ok: false; err: unknown })[] = [];
    try {
      this.db.transaction(() => {
        for (const p of group) {
          try {
            // A nested transaction is a savepoint: a write that fails is undone alone.
            outcomes.push({ ok: true, value: this.db.transaction(p.work)() });
          } catch (err) {
            // Some errors (SQLITE_FULL, I/O errors) make SQLite roll back the whole transaction: then
            // nothing of the group is stored, and every write of it fails (below) rather than commit alone.
            if (!this.db.inTransaction) throw err;
            outcomes.push({ ok: false, err });
          }
        }
      })();
    } catch (err) {
      for (const p of group) p.reject(err);
      return;
    }
    this.commits++;
    this.writes += group.length;
    group.forEach((p, i) => {
      const o = outcomes[i]!;
      if (o.ok) p.resolve(o.value);
      else p.reject(o.err);
    });
  }
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
