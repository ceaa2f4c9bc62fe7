/**
 * How both engines version their schema. Each engine owns its list
 * (sqlite/migrations.ts, postgres/migrations.ts) and its runner, since the
 * SQL dialects and the locking differ; they share only this shape.
 *
 * A migration never changes once released: add a new one. Each is applied
 * in its own transaction, and the applied version recorded in the
 * schema_version table.
 */
export interface Migration {
  version: number;
  sql: string;
}

/** The migrations of `all` still to apply over a database at version `current`, in list order. */
export function pendingMigrations(all: readonly Migration[], current: number): Migration[] {
  return all.filter((m) => m.version > current);
}
