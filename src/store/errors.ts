/**
 * The errors a Store raises that callers act on. Every other error is a bug
 * or bad input and passes through unchanged.
 */

/** Raised when a unique value (a user name) is already taken. */
export class DuplicateError extends Error {
  override name = 'DuplicateError';
}

/**
 * The store cannot be reached (PostgreSQL down, connection lost). The failed
 * call's writes were rolled back (only a connection lost during COMMIT itself
 * leaves that unknown, as with any database): callers tell their client to
 * try again later, and never acknowledge what they could not store.
 */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

/** SQLite result codes meaning "cannot write now" rather than a bug: full, I/O error, read-only, locked too long. */
const SQLITE_UNAVAILABLE = /^SQLITE_(FULL|IOERR|READONLY|BUSY|LOCKED|CANTOPEN)/;

/**
 * The StoreUnavailableError an error amounts to, or undefined when it is
 * something else (a bug, bad input). PostgresStore raises its own; SQLite's
 * (better-sqlite3 SqliteError with a result code) are recognised here.
 */
export function storeUnavailable(err: unknown): StoreUnavailableError | undefined {
  if (err instanceof StoreUnavailableError) return err;
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && SQLITE_UNAVAILABLE.test(code)) {
    const why = code === 'SQLITE_FULL' ? 'the SQLite database is full (sqliteMaxSizeMb or the disk)' : `SQLite cannot write (${code})`;
    return new StoreUnavailableError(`${why}: ${(err as Error).message}`, { cause: err });
  }
  return undefined;
}
