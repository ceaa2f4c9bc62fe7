/**
 * Group commit for SQLite: writes asked for in the same event-loop turn
 * share one transaction, so one fsync (synchronous=FULL) covers them all.
 *
 * Each write queued in that turn runs inside one transaction, and every
 * promise resolves only once that transaction is committed and on disk, so a
 * caller that acknowledges after awaiting still acknowledges only what is
 * on disk. A COMMIT that fails (disk full, I/O error) rejects every write of
 * the group: none of them is stored.
 *
 * Most groups have no failing write, so a group first runs without
 * savepoints; if any write of it throws, that transaction is rolled back
 * whole and the group runs again, each write in its own savepoint (a write
 * that fails is undone and rejects alone). A write may therefore run twice:
 * it must only run statements and compute from them (what a rollback undoes).
 *
 * The fsync, off the event loop. With synchronous=FULL in WAL mode, SQLite's
 * COMMIT appends the transaction to the WAL file and then fsyncs it, and
 * better-sqlite3 waits for that on the event loop (milliseconds when the
 * disk is busy). Here a group's COMMIT runs with synchronous=NORMAL (the same
 * frames appended, no fsync; the setting is back to FULL at once, for every
 * other write), then the WAL file is fdatasync'ed on libuv's thread pool and
 * the group's promises settle after that: the same bytes on disk before any
 * write is acknowledged, as with FULL. While that sync runs, the event loop
 * serves requests, and the writes they ask for wait and form the next group.
 * Until the sync is done the rows are visible to reads on this connection
 * (a few milliseconds); nothing is acknowledged before it. With
 * synchronous=NORMAL (sqliteSynchronous), no WAL or a database in memory, a
 * group settles right after its COMMIT, as before.
 */
import { close as closeFile, closeSync, fdatasync, fdatasyncSync, open as openFile, openSync } from 'node:fs';
import type Database from 'better-sqlite3';

interface Pending {
  work: () => unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** Most writes in one transaction (a long group delays its first writer's answer). */
const MAX_GROUP = 512;

/** A committed group, its outcomes waiting for the WAL's fsync. */
interface Committed {
  group: Pending[];
  values: unknown[] | undefined;
  outcomes: Outcome[] | undefined;
}

export class GroupCommit {
  private queue: Pending[] = [];
  private scheduled = false;
  /** Groups committed whose WAL sync has not started, and those of the sync under way. */
  private unsynced: Committed[] = [];
  private syncing: Committed[] | undefined;
  /** The WAL file to sync (undefined: not looked up yet; null: none, groups settle at COMMIT). */
  private walPath: string | null | undefined;
  /** Transactions committed, and writes in them; fsyncs of the WAL made off the event loop (tests and the benchmark read them). */
  commits = 0;
  writes = 0;
  syncs = 0;

  constructor(private readonly db: Database.Database) {}

  /** Runs `work` (synchronous statements) in the next group's transaction; resolves after that transaction is committed and on disk. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      // While the WAL is being synced, writes wait for it and then go in one group.
      if (!this.scheduled && !this.syncing) {
        this.scheduled = true;
        setImmediate(() => this.flush(false));
      }
    });
  }

  /** Commits what is queued now; `wait` (before the database closes): syncs the WAL here and settles everything. */
  flush(wait = true): void {
    this.scheduled = false;
    while (this.queue.length > 0) {
      const group = this.queue.length <= MAX_GROUP ? this.queue : this.queue.slice(0, MAX_GROUP);
      this.queue = this.queue.length <= MAX_GROUP ? [] : this.queue.slice(MAX_GROUP);
      this.commit(group);
    }
    if (wait) this.syncNow();
    else this.startSync();
  }

  private commit(group: Pending[]): void {
    if (!this.db.open) {
      const closed = new Error('the database is closed');
      for (const p of group) p.reject(closed);
      return;
    }
    let values: unknown[] | undefined;
    let outcomes: Outcome[] | undefined;
    const deferred = this.deferSync();
    try {
      if (deferred) this.db.exec('PRAGMA synchronous = NORMAL');
      try {
        values = this.db.inTransaction ? undefined : this.optimistic(group);
        if (values === undefined) outcomes = this.careful(group);
      } finally {
        if (deferred) this.db.exec('PRAGMA synchronous = FULL');
      }
    } catch (err) {
      for (const p of group) p.reject(err);
      return;
    }
    this.commits++;
    this.writes += group.length;
    if (deferred) this.unsynced.push({ group, values, outcomes });
    else settle({ group, values, outcomes });
  }

  /** Whether this group's COMMIT may leave the fsync to the thread pool: synchronous=FULL, a WAL file, no outer transaction. */
  private deferSync(): boolean {
    if (this.walPath === undefined) {
      const wal = !this.db.memory && String(this.db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
      const file = (this.db.pragma('database_list') as { name: string; file: string }[]).find((d) => d.name === 'main')?.file;
      this.walPath = wal && file ? `${file}-wal` : null;
    }
    // Read each time (a pragma is not a statement to keep prepared: some run when prepared, not when run).
    return this.walPath !== null && !this.db.inTransaction && this.db.pragma('synchronous', { simple: true }) === SYNCHRONOUS_FULL;
  }

  /** Syncs the WAL on the thread pool for the groups committed so far; settles them after. One sync at a time. */
  private startSync(): void {
    if (this.syncing || this.unsynced.length === 0) return;
    const batch = this.unsynced;
    this.unsynced = [];
    this.syncing = batch;
    const done = (err: NodeJS.ErrnoException | null): void => {
      this.syncing = undefined;
      this.syncs++;
      for (const c of batch) settle(c, err ?? undefined);
      // The writes that arrived meanwhile: the next group.
      if (this.queue.length > 0 && !this.scheduled) this.flush(false);
    };
    openFile(this.walPath!, 'r', (err, fd) => {
      if (err) return done(err);
      fdatasync(fd, (syncErr) => closeFile(fd, () => done(syncErr)));
    });
  }

  /** Syncs the WAL here, for every group committed (also those of a sync under way), and settles them. */
  private syncNow(): void {
    const batch = [...(this.syncing ?? []), ...this.unsynced];
    this.unsynced = [];
    if (batch.length === 0) return;
    let failure: unknown;
    try {
      const fd = openSync(this.walPath!, 'r');
      try {
        fdatasyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      failure = err;
    }
    for (const c of batch) settle(c, failure);
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

/** PRAGMA synchronous: 2 is FULL. */
const SYNCHRONOUS_FULL = 2;

/** Resolves or rejects each write of a committed group; all of them reject when the WAL could not be synced. */
function settle({ group, values, outcomes }: Committed, syncFailure?: unknown): void {
  if (syncFailure !== undefined) {
    const err = new Error(`the commit could not be synced to disk: ${(syncFailure as Error).message}`, { cause: syncFailure });
    for (const p of group) p.reject(err);
    return;
  }
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
