/**
 * The PostgreSQL connection every domain shares: a `pg` pool, the ways to
 * run a statement on it (alone or in a transaction), and the mapping of a
 * lost connection to StoreUnavailableError.
 */
import pg from 'pg';
import { StoreUnavailableError } from '../errors.js';

export type Row = Record<string, unknown>;
export type Param = string | number | boolean | Buffer | null | readonly string[] | readonly number[] | readonly Buffer[];

/** Something statements run on: the pool, or the one connection of a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = Row>(text: string, params?: Param[]): Promise<pg.QueryResult<R>>;
}

/** What a PostgreSQL domain is built over. Every failure of a lost connection arrives as StoreUnavailableError. */
export interface PgHandle {
  /** One statement on any pooled connection (reads and writes that need no transaction). */
  readonly direct: Queryable;
  /** The rows of one statement on any pooled connection. */
  rows<R extends pg.QueryResultRow = Row>(text: string, params?: Param[]): Promise<R[]>;
  /** How many rows one statement on any pooled connection touched. */
  count(text: string, params?: Param[]): Promise<number>;
  /** Runs `fn` in one transaction on one pooled connection; any error rolls it back. */
  tx<T>(fn: (c: Queryable) => Promise<T>): Promise<T>;
}

export interface PoolOptions {
  connectionString: string;
  /** Connections in the pool. */
  poolSize?: number;
}

/** BIGINT (oid 20) as a JS number: every value Herald keeps (ms times, row ids) fits in 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** A pool whose idle clients may lose their connection without taking the process down (the pool replaces them). */
export function openPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.poolSize ?? 10,
    types,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
  });
  pool.on('error', () => undefined);
  return pool;
}

export const isUniqueViolation = (err: unknown): boolean => (err as { code?: string }).code === '23505';

/** Socket errors, SQLSTATE class 08 (connection exception) and 57P01–57P03 (server shutting down or starting). */
const CONNECTION_CODES = /^(08|57P0[123]$|E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN)$|ENOTFOUND$)/;
const CONNECTION_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended/i;

/** A lost or refused connection becomes StoreUnavailableError; anything else passes unchanged. */
export function unavailable(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof StoreUnavailableError) return err;
  const code = (err as { code?: unknown }).code;
  if ((typeof code === 'string' && CONNECTION_CODES.test(code)) || CONNECTION_MESSAGES.test(err.message)) {
    return new StoreUnavailableError(`PostgreSQL is unreachable: ${err.message || code}`, { cause: err });
  }
  return err;
}

export function pgHandle(pool: pg.Pool): PgHandle {
  const direct: Queryable = {
    query: <R extends pg.QueryResultRow>(text: string, params?: Param[]) =>
      pool.query<R>(text, params as unknown[]).catch((err: unknown) => {
        throw unavailable(err);
      }),
  };

  return {
    direct,

    async rows<R extends pg.QueryResultRow>(text: string, params: Param[] = []) {
      return (await direct.query<R>(text, params)).rows;
    },

    async count(text, params = []) {
      return (await direct.query(text, params)).rowCount ?? 0;
    },

    async tx<T>(fn: (c: Queryable) => Promise<T>): Promise<T> {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw unavailable(err);
      }
      // A connection lost between two statements is reported on the client, not on a query:
      // without a listener it would end the process. The next statement fails and rolls back.
      let broken: unknown;
      const onError = (err: unknown): void => void (broken = err);
      client.on('error', onError);
      const c: Queryable = { query: <R extends pg.QueryResultRow>(text: string, params?: Param[]) => client.query<R>(text, params as unknown[]) };
      try {
        await client.query('BEGIN');
        const result = await fn(c);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw unavailable(err);
      } finally {
        client.off('error', onError);
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
  };
}
