/**
 * PostgreSQL Store on `pg` (pooled), for cluster mode: every node shares one
 * database. Same contract and test suite as SQLite. Each call is one
 * statement or one transaction, committed (and so durable, with the default
 * synchronous_commit) before its promise resolves.
 *
 * Claims (queue messages, persistent MQTT sessions) use row locks with
 * SKIP LOCKED, so concurrent nodes never take the same row.
 */
import pg from 'pg';
import {
  DuplicateError,
  rowId,
  StoreUnavailableError,
  type AppRecord,
  type AppTokenRecord,
  type DeliveryStatus,
  type MessageQuery,
  type MessageRecord,
  type MqttQueuedRecord,
  type MqttSessionRecord,
  type MqttSubscriptionRecord,
  type NewMessage,
  type NewQueuedMessage,
  type NewThreadMessage,
  type NewUser,
  type Page,
  type QueuedMessage,
  type Receipt,
  type RetainedRecord,
  type Role,
  type Store,
  type StoredMessage,
  type ThreadMember,
  type ThreadMessageRecord,
  type ThreadRecord,
  type ThreadRole,
  type ThreadStatus,
  type ThreadSummary,
  type TokenRecord,
  type UserPatch,
  type UserRecord,
} from '../store.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';

type Row = Record<string, unknown>;
type Param = string | number | boolean | Buffer | null | readonly string[];

/** BIGINT (oid 20) as a JS number: every value Herald keeps (ms times, row ids) fits in 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

const str = (v: unknown): string => v as string;
const num = (v: unknown): number => v as number;
const numOrNull = (v: unknown): number | null => (v === null ? null : (v as number));

const toUser = (r: Row): UserRecord => ({
  id: String(r.id),
  name: str(r.name),
  role: r.role as Role,
  passwordHash: str(r.password_hash),
  disabled: r.disabled === true,
  createdAt: num(r.created_at),
  tokensValidAfter: num(r.tokens_valid_after),
});
const toToken = (r: Row): TokenRecord => ({
  hash: str(r.hash),
  userId: str(r.user_id),
  createdAt: num(r.created_at),
  lastUsedAt: num(r.last_used_at),
  expiresAt: numOrNull(r.expires_at),
  idleExpiry: r.idle_expiry === true,
});
const toMessage = (r: Row): StoredMessage => ({
  id: String(r.id),
  sender: str(r.sender),
  title: str(r.title),
  content: str(r.content),
  type: str(r.type),
  createdAt: num(r.created_at),
});
const toThreadMessage = (r: Row): ThreadMessageRecord => ({
  seq: String(r.seq),
  threadId: String(r.thread_id),
  uid: str(r.uid),
  type: str(r.type),
  author: str(r.author),
  body: str(r.body),
  createdAt: num(r.created_at),
  recalled: r.recalled === true,
});
const toQueued = (r: Row): QueuedMessage => ({
  id: String(r.id),
  queue: str(r.queue),
  body: r.body as Buffer,
  contentType: (r.content_type as string | null) ?? null,
  headers: JSON.parse(str(r.headers)) as [string, string][],
  createdAt: num(r.created_at),
  redelivered: r.redelivered === true,
});
const toMqttSession = (r: Row): MqttSessionRecord => ({
  clientId: str(r.client_id),
  owner: str(r.owner),
  expirySeconds: num(r.expiry_seconds),
  disconnectedAt: numOrNull(r.disconnected_at),
  subscriptions: JSON.parse(str(r.subscriptions)) as MqttSubscriptionRecord[],
  qos2In: JSON.parse(str(r.qos2_in)) as number[],
  node: (r.node as string | null) ?? null,
});
const toApp = (r: Row): AppRecord => ({
  id: str(r.id),
  name: str(r.name),
  clientId: str(r.client_id),
  secretHash: str(r.secret_hash),
  createdAt: num(r.created_at),
});

const isUniqueViolation = (err: unknown): boolean => (err as { code?: string }).code === '23505';

/** Socket errors, SQLSTATE class 08 (connection exception) and 57P01–57P03 (server shutting down or starting). */
const CONNECTION_CODES = /^(08|57P0[123]$|E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN)$|ENOTFOUND$)/;
const CONNECTION_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended/i;

/** A lost or refused connection becomes StoreUnavailableError; anything else passes unchanged. */
function unavailable(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof StoreUnavailableError) return err;
  const code = (err as { code?: unknown }).code;
  if ((typeof code === 'string' && CONNECTION_CODES.test(code)) || CONNECTION_MESSAGES.test(err.message)) {
    return new StoreUnavailableError(`PostgreSQL is unreachable: ${err.message || code}`, { cause: err });
  }
  return err;
}

interface Queryable {
  query(text: string, params?: Param[]): Promise<pg.QueryResult<Row>>;
}

export interface PostgresStoreOptions {
  connectionString: string;
  /** Connections in the pool. */
  poolSize?: number;
}

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  /** One statement on any pooled connection (reads that need no transaction). */
  private readonly direct: Queryable;
  private closed = false;

  private constructor(pool: pg.Pool) {
    this.pool = pool;
    this.direct = {
      query: (text, params) =>
        pool.query<Row>(text, params as unknown[]).catch((err: unknown) => {
          throw unavailable(err);
        }),
    };
  }

  /** Connects, runs pending migrations (one node at a time), and returns the store. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.poolSize ?? 10,
      types,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30_000,
    });
    // An idle client losing its connection must not take the process down; the pool replaces it.
    pool.on('error', () => undefined);
    const store = new PostgresStore(pool);
    try {
      await store.migrate();
    } catch (err) {
      await pool.end();
      throw unavailable(err);
    }
    return store;
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    const onError = (): void => undefined; // the next statement fails and says why
    client.on('error', onError);
    try {
      await client.query('SELECT pg_advisory_lock(7347021)');
      await client.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
      const current = Number((await client.query<Row>('SELECT COALESCE(MAX(version), 0) AS v FROM schema_version')).rows[0]!.v);
      for (const m of POSTGRES_MIGRATIONS) {
        if (m.version <= current) continue;
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO schema_version (version) VALUES ($1)', [m.version]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw err;
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock(7347021)').catch(() => undefined);
      client.off('error', onError);
      client.release();
    }
  }

  private async q(text: string, params: Param[] = []): Promise<Row[]> {
    return (await this.direct.query(text, params)).rows;
  }

  private async count(text: string, params: Param[] = []): Promise<number> {
    return (await this.direct.query(text, params)).rowCount ?? 0;
  }

  /** Runs `fn` in one transaction on one pooled connection. */
  private async tx<T>(fn: (c: Queryable) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw unavailable(err);
    }
    // A connection lost between two statements is reported on the client, not on a query:
    // without a listener it would end the process. The next statement fails and rolls back.
    let broken: unknown;
    const onError = (err: unknown): void => void (broken = err);
    client.on('error', onError);
    const c: Queryable = { query: (text, params) => client.query<Row>(text, params as unknown[]) };
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
  }

  async ping(): Promise<void> {
    await this.direct.query('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  // ---- users and tokens ------------------------------------------------------

  async createUser(user: NewUser): Promise<UserRecord> {
    try {
      const rows = await this.q('INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING *', [
        user.name,
        user.role,
        user.passwordHash,
        user.createdAt,
      ]);
      return toUser(rows[0]!);
    } catch (err) {
      if (isUniqueViolation(err)) throw new DuplicateError(`a user named "${user.name}" already exists`);
      throw err;
    }
  }

  async getUserById(id: string): Promise<UserRecord | null> {
    const n = rowId(id);
    if (n === null) return null;
    const r = (await this.q('SELECT * FROM users WHERE id = $1', [n]))[0];
    return r ? toUser(r) : null;
  }

  async getUserByName(name: string): Promise<UserRecord | null> {
    const r = (await this.q('SELECT * FROM users WHERE name = $1', [name]))[0];
    return r ? toUser(r) : null;
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.q('SELECT * FROM users ORDER BY id')).map(toUser);
  }

  async countUsers(): Promise<number> {
    return num((await this.q('SELECT COUNT(*)::int AS n FROM users'))[0]!.n);
  }

  async updateUser(id: string, patch: UserPatch): Promise<UserRecord | null> {
    const n = rowId(id);
    if (n === null) return null;
    const sets: string[] = [];
    const args: Param[] = [];
    if (patch.role !== undefined) (args.push(patch.role), sets.push(`role = $${args.length}`));
    if (patch.passwordHash !== undefined) (args.push(patch.passwordHash), sets.push(`password_hash = $${args.length}`));
    if (patch.disabled !== undefined) (args.push(patch.disabled), sets.push(`disabled = $${args.length}`));
    if (patch.tokensValidAfter !== undefined) (args.push(patch.tokensValidAfter), sets.push(`tokens_valid_after = $${args.length}`));
    if (sets.length === 0) return this.getUserById(id);
    args.push(n);
    const r = (await this.q(`UPDATE users SET ${sets.join(', ')} WHERE id = $${args.length} RETURNING *`, args))[0];
    return r ? toUser(r) : null;
  }

  async insertToken(t: TokenRecord): Promise<void> {
    await this.q('INSERT INTO tokens (hash, user_id, created_at, last_used_at, expires_at, idle_expiry) VALUES ($1, $2, $3, $4, $5, $6)', [
      t.hash,
      t.userId,
      t.createdAt,
      t.lastUsedAt,
      t.expiresAt,
      t.idleExpiry,
    ]);
  }

  async getToken(hash: string): Promise<TokenRecord | null> {
    const r = (await this.q('SELECT * FROM tokens WHERE hash = $1', [hash]))[0];
    return r ? toToken(r) : null;
  }

  async touchToken(hash: string, lastUsedAt: number): Promise<void> {
    await this.q('UPDATE tokens SET last_used_at = $1 WHERE hash = $2 AND last_used_at < $1', [lastUsedAt, hash]);
  }

  async deleteToken(hash: string): Promise<boolean> {
    return (await this.count('DELETE FROM tokens WHERE hash = $1', [hash])) > 0;
  }

  async deleteTokensOfUser(userId: string): Promise<string[]> {
    return (await this.q('DELETE FROM tokens WHERE user_id = $1 RETURNING hash', [userId])).map((r) => str(r.hash));
  }

  async deleteDeadTokens(idleBefore: number, now: number): Promise<number> {
    return this.count('DELETE FROM tokens WHERE (idle_expiry AND last_used_at < $1) OR (expires_at IS NOT NULL AND expires_at <= $2)', [idleBefore, now]);
  }

  // ---- message service -------------------------------------------------------

  async insertMessage(m: NewMessage): Promise<string> {
    return this.tx(async (c) => {
      const id = num(
        (await c.query('INSERT INTO messages (sender, title, content, type, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id', [m.sender, m.title, m.content, m.type, m.createdAt]))
          .rows[0]!.id,
      );
      if (m.receivers.length > 0) {
        await c.query(
          `INSERT INTO message_receivers (message_id, receiver, status, updated_at)
           SELECT $1, r, 'PENDING', $2 FROM unnest($3::text[]) AS r ON CONFLICT DO NOTHING`,
          [id, m.createdAt, m.receivers],
        );
      }
      return String(id);
    });
  }

  private async receiptsOf(ids: number[]): Promise<Map<number, Receipt[]>> {
    const out = new Map<number, Receipt[]>();
    for (const id of ids) out.set(id, []);
    if (ids.length === 0) return out;
    const rows = await this.q('SELECT * FROM message_receivers WHERE message_id = ANY($1::bigint[]) ORDER BY receiver', [ids.map(String)]);
    for (const r of rows) out.get(num(r.message_id))?.push({ receiver: str(r.receiver), status: r.status as DeliveryStatus, updatedAt: num(r.updated_at) });
    return out;
  }

  async getMessage(id: string): Promise<MessageRecord | null> {
    const n = rowId(id);
    if (n === null) return null;
    const r = (await this.q('SELECT * FROM messages WHERE id = $1', [n]))[0];
    if (!r) return null;
    return { ...toMessage(r), receivers: (await this.receiptsOf([n])).get(n)! };
  }

  async pendingFor(receiver: string, limit: number): Promise<StoredMessage[]> {
    const rows = await this.q(
      `SELECT m.* FROM message_receivers r JOIN messages m ON m.id = r.message_id
       WHERE r.receiver = $1 AND r.status = 'PENDING' ORDER BY m.id LIMIT $2`,
      [receiver, limit],
    );
    return rows.map(toMessage);
  }

  async setDeliveryStatus(messageId: string, receiver: string, status: DeliveryStatus, at: number): Promise<boolean> {
    const n = rowId(messageId);
    if (n === null) return false;
    const rank = "(CASE $S WHEN 'PENDING' THEN 0 WHEN 'DELIVERED' THEN 1 ELSE 2 END)";
    return (
      (await this.count(
        `UPDATE message_receivers SET status = $1, updated_at = $2
         WHERE message_id = $3 AND receiver = $4 AND ${rank.replace('$S', 'status')} < ${rank.replace('$S', '$1')}`,
        [status, at, n, receiver],
      )) > 0
    );
  }

  async queryMessages(q: MessageQuery): Promise<Page<MessageRecord>> {
    const where: string[] = [];
    const args: Param[] = [];
    const arg = (v: Param): string => (args.push(v), `$${args.length}`);
    if (q.sender !== undefined) where.push(`m.sender = ${arg(q.sender)}`);
    if (q.type !== undefined) where.push(`m.type = ${arg(q.type)}`);
    if (q.from !== undefined) where.push(`m.created_at >= ${arg(q.from)}`);
    if (q.to !== undefined) where.push(`m.created_at <= ${arg(q.to)}`);
    if (q.status !== undefined || q.receiver !== undefined) {
      const sub: string[] = ['r.message_id = m.id'];
      if (q.status !== undefined) sub.push(`r.status = ${arg(q.status)}`);
      if (q.receiver !== undefined) sub.push(`r.receiver = ${arg(q.receiver)}`);
      where.push(`EXISTS (SELECT 1 FROM message_receivers r WHERE ${sub.join(' AND ')})`);
    }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = num((await this.q(`SELECT COUNT(*)::int AS n FROM messages m ${clause}`, args))[0]!.n);
    const rows = await this.q(`SELECT m.* FROM messages m ${clause} ORDER BY m.id DESC LIMIT ${arg(q.size)} OFFSET ${arg((q.page - 1) * q.size)}`, args);
    const receipts = await this.receiptsOf(rows.map((r) => num(r.id)));
    const items = rows.map((r) => ({ ...toMessage(r), receivers: receipts.get(num(r.id))! }));
    return { items, total, page: q.page, size: q.size };
  }

  async deleteMessage(id: string): Promise<boolean> {
    const n = rowId(id);
    if (n === null) return false;
    return (await this.count('DELETE FROM messages WHERE id = $1', [n])) > 0;
  }

  async pruneMessages(olderThan: number, maxPerReceiver: number, batch: number): Promise<number> {
    return this.tx(async (c) => {
      let removed =
        (await c.query('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < $1 ORDER BY id LIMIT $2)', [olderThan, batch])).rowCount ?? 0;
      const crowded = (await c.query('SELECT receiver FROM message_receivers GROUP BY receiver HAVING COUNT(*) > $1 LIMIT $2', [maxPerReceiver, batch])).rows;
      for (const { receiver } of crowded) {
        const ids = (
          await c.query('SELECT message_id FROM message_receivers WHERE receiver = $1 ORDER BY message_id DESC LIMIT $2 OFFSET $3', [str(receiver), batch, maxPerReceiver])
        ).rows.map((r) => String(r.message_id));
        if (ids.length === 0) continue;
        removed += (await c.query('DELETE FROM message_receivers WHERE receiver = $1 AND message_id = ANY($2::bigint[])', [str(receiver), ids])).rowCount ?? 0;
        removed +=
          (
            await c.query(
              'DELETE FROM messages m WHERE m.id = ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM message_receivers r WHERE r.message_id = m.id)',
              [ids],
            )
          ).rowCount ?? 0;
      }
      return removed;
    });
  }

  // ---- chat threads ----------------------------------------------------------

  private async membersOf(c: Queryable, ids: number[]): Promise<Map<number, ThreadMember[]>> {
    const out = new Map<number, ThreadMember[]>();
    for (const id of ids) out.set(id, []);
    if (ids.length === 0) return out;
    const rows = (await c.query('SELECT thread_id, user_id, role FROM thread_members WHERE thread_id = ANY($1::bigint[]) ORDER BY user_id', [ids.map(String)])).rows;
    for (const r of rows) out.get(num(r.thread_id))?.push({ userId: str(r.user_id), role: r.role as ThreadRole });
    return out;
  }

  private toThread(r: Row, members: ThreadMember[]): ThreadRecord {
    return {
      id: String(r.id),
      topic: str(r.topic),
      status: r.status as ThreadStatus,
      createdBy: str(r.created_by),
      createdAt: num(r.created_at),
      lastActivityAt: num(r.last_activity_at),
      closedAt: numOrNull(r.closed_at),
      members,
    };
  }

  private async threads(c: Queryable, rows: Row[]): Promise<ThreadRecord[]> {
    const members = await this.membersOf(c, rows.map((r) => num(r.id)));
    return rows.map((r) => this.toThread(r, members.get(num(r.id))!));
  }

  async createThread(topic: string, createdBy: string, createdAt: number, members: ThreadMember[]): Promise<ThreadRecord> {
    try {
      return await this.tx(async (c) => {
        const row = (
          await c.query("INSERT INTO threads (topic, status, created_by, created_at, last_activity_at) VALUES ($1, 'OPEN', $2, $3, $3) RETURNING *", [topic, createdBy, createdAt])
        ).rows[0]!;
        for (const m of members) {
          await c.query(
            'INSERT INTO thread_members (thread_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT (thread_id, user_id) DO UPDATE SET role = excluded.role',
            [num(row.id), m.userId, m.role],
          );
        }
        return (await this.threads(c, [row]))[0]!;
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new DuplicateError(`thread ${topic} already exists`);
      throw err;
    }
  }

  async getThread(topic: string): Promise<ThreadRecord | null> {
    const rows = await this.q('SELECT * FROM threads WHERE topic = $1', [topic]);
    return (await this.threads(this.direct, rows))[0] ?? null;
  }

  async addThreadMember(threadId: string, member: ThreadMember): Promise<void> {
    const n = rowId(threadId);
    if (n === null) throw new Error(`no thread ${threadId}`);
    await this.q(
      'INSERT INTO thread_members (thread_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT (thread_id, user_id) DO UPDATE SET role = excluded.role',
      [n, member.userId, member.role],
    );
  }

  /** Two round trips whatever the length: threads with their last message and unread count, then all members. */
  async listThreads(opts: { member?: string; status?: ThreadStatus; limit: number }): Promise<ThreadSummary[]> {
    const where: string[] = [];
    const args: Param[] = [];
    const arg = (v: Param): string => (args.push(v), `$${args.length}`);
    let unread = '0 AS unread';
    let unreadJoin = '';
    if (opts.member !== undefined) {
      const me = arg(opts.member);
      where.push(`t.id IN (SELECT thread_id FROM thread_members WHERE user_id = ${me})`);
      unread = 'u.n AS unread';
      unreadJoin = `CROSS JOIN LATERAL (
        SELECT COUNT(*)::int AS n FROM thread_messages m
        WHERE m.thread_id = t.id AND m.author <> ${me} AND m.type NOT IN ('READ', 'DELIVERED', 'TYPING', 'PROCESSING') AND NOT m.recalled
          AND NOT EXISTS (SELECT 1 FROM thread_receipts r WHERE r.thread_id = m.thread_id AND r.uid = m.uid AND r.user_id = ${me} AND r.status = 'READ')) u`;
    }
    if (opts.status !== undefined) where.push(`t.status = ${arg(opts.status)}`);
    const rows = await this.q(
      `SELECT t.*, ${unread},
              lm.seq AS lm_seq, lm.uid AS lm_uid, lm.type AS lm_type, lm.author AS lm_author,
              lm.body AS lm_body, lm.created_at AS lm_created_at, lm.recalled AS lm_recalled
       FROM threads t
       LEFT JOIN LATERAL (SELECT * FROM thread_messages WHERE thread_id = t.id ORDER BY seq DESC LIMIT 1) lm ON TRUE
       ${unreadJoin}
       ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
       ORDER BY t.last_activity_at DESC, t.id DESC LIMIT ${arg(opts.limit)}`,
      args,
    );
    const threads = await this.threads(this.direct, rows);
    return threads.map((thread, i) => {
      const r = rows[i]!;
      const lastMessage =
        r.lm_seq === null
          ? null
          : toThreadMessage({
              seq: r.lm_seq,
              thread_id: r.id,
              uid: r.lm_uid,
              type: r.lm_type,
              author: r.lm_author,
              body: r.lm_body,
              created_at: r.lm_created_at,
              recalled: r.lm_recalled,
            });
      return { thread, lastMessage, unread: num(r.unread) };
    });
  }

  async setThreadStatus(threadId: string, status: ThreadStatus, at: number): Promise<boolean> {
    const n = rowId(threadId);
    if (n === null) return false;
    return (
      (await this.count('UPDATE threads SET status = $1, closed_at = $2, last_activity_at = $3 WHERE id = $4 AND status <> $1', [
        status,
        status === 'CLOSED' ? at : null,
        at,
        n,
      ])) > 0
    );
  }

  async idleThreads(before: number, limit: number): Promise<ThreadRecord[]> {
    const rows = await this.q("SELECT * FROM threads WHERE status = 'OPEN' AND last_activity_at < $1 ORDER BY last_activity_at LIMIT $2", [before, limit]);
    return this.threads(this.direct, rows);
  }

  async addThreadMessage(m: NewThreadMessage): Promise<{ record: ThreadMessageRecord; duplicate: boolean }> {
    const threadId = rowId(m.threadId);
    if (threadId === null) throw new Error(`no thread ${m.threadId}`);
    return this.tx(async (c) => {
      const inserted = (
        await c.query(
          `INSERT INTO thread_messages (thread_id, uid, type, author, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (thread_id, uid) DO NOTHING RETURNING seq`,
          [threadId, m.uid, m.type, m.author, m.body, m.createdAt],
        )
      ).rows[0];
      if (!inserted) {
        const existing = (await c.query('SELECT * FROM thread_messages WHERE thread_id = $1 AND uid = $2', [threadId, m.uid])).rows[0]!;
        return { record: toThreadMessage(existing), duplicate: true };
      }
      await c.query('UPDATE threads SET last_activity_at = $1 WHERE id = $2', [m.createdAt, threadId]);
      return { record: { ...m, seq: String(inserted.seq), recalled: false }, duplicate: false };
    });
  }

  async getThreadMessage(threadId: string, uid: string): Promise<ThreadMessageRecord | null> {
    const n = rowId(threadId);
    if (n === null) return null;
    const r = (await this.q('SELECT * FROM thread_messages WHERE thread_id = $1 AND uid = $2', [n, uid]))[0];
    return r ? toThreadMessage(r) : null;
  }

  async markRecalled(threadId: string, uid: string): Promise<boolean> {
    const n = rowId(threadId);
    if (n === null) return false;
    return (await this.count('UPDATE thread_messages SET recalled = TRUE WHERE thread_id = $1 AND uid = $2 AND NOT recalled', [n, uid])) > 0;
  }

  async threadHistory(threadId: string, opts: { afterSeq?: string; beforeSeq?: string; sinceTime?: number; limit: number }): Promise<ThreadMessageRecord[]> {
    const n = rowId(threadId);
    if (n === null) return [];
    const args: Param[] = [n];
    const arg = (v: Param): string => (args.push(v), `$${args.length}`);
    const where = ['thread_id = $1'];
    if (opts.afterSeq !== undefined) where.push(`seq > ${arg(Number(opts.afterSeq) || 0)}`);
    if (opts.beforeSeq !== undefined) where.push(`seq < ${arg(Number(opts.beforeSeq) || 0)}`);
    if (opts.sinceTime !== undefined) where.push(`created_at > ${arg(opts.sinceTime)}`);
    const forward = opts.afterSeq !== undefined || opts.sinceTime !== undefined;
    const rows = await this.q(`SELECT * FROM thread_messages WHERE ${where.join(' AND ')} ORDER BY seq ${forward ? 'ASC' : 'DESC'} LIMIT ${arg(opts.limit)}`, args);
    if (!forward) rows.reverse();
    return rows.map(toThreadMessage);
  }

  async setThreadReceipt(threadId: string, uid: string, userId: string, status: 'DELIVERED' | 'READ', at: number): Promise<boolean> {
    const n = rowId(threadId);
    if (n === null) return false;
    return (
      (await this.count(
        `INSERT INTO thread_receipts (thread_id, uid, user_id, status, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (thread_id, uid, user_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
         WHERE thread_receipts.status = 'DELIVERED' AND excluded.status = 'READ'`,
        [n, uid, userId, status, at],
      )) > 0
    );
  }

  async threadReceipts(threadId: string, uid: string): Promise<{ userId: string; status: 'DELIVERED' | 'READ'; updatedAt: number }[]> {
    const n = rowId(threadId);
    if (n === null) return [];
    const rows = await this.q('SELECT user_id, status, updated_at FROM thread_receipts WHERE thread_id = $1 AND uid = $2 ORDER BY user_id', [n, uid]);
    return rows.map((r) => ({ userId: str(r.user_id), status: r.status as 'DELIVERED' | 'READ', updatedAt: num(r.updated_at) }));
  }

  // ---- MQTT apps, retained, sessions ---------------------------------------------

  async createApp(app: AppRecord): Promise<void> {
    try {
      await this.q('INSERT INTO apps (id, name, client_id, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)', [
        app.id,
        app.name,
        app.clientId,
        app.secretHash,
        app.createdAt,
      ]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new DuplicateError(`app ${app.id} already exists`);
      throw err;
    }
  }

  async getApp(id: string): Promise<AppRecord | null> {
    const r = (await this.q('SELECT * FROM apps WHERE id = $1', [id]))[0];
    return r ? toApp(r) : null;
  }

  async getAppByClientId(clientId: string): Promise<AppRecord | null> {
    const r = (await this.q('SELECT * FROM apps WHERE client_id = $1', [clientId]))[0];
    return r ? toApp(r) : null;
  }

  async listApps(): Promise<AppRecord[]> {
    return (await this.q('SELECT * FROM apps ORDER BY created_at, id')).map(toApp);
  }

  async insertAppToken(t: AppTokenRecord): Promise<void> {
    await this.q('INSERT INTO app_tokens (hash, kind, app_id, username, cid, expires_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      t.hash,
      t.kind,
      t.appId,
      t.username,
      t.cid,
      t.expiresAt,
    ]);
  }

  async getAppToken(hash: string): Promise<AppTokenRecord | null> {
    const r = (await this.q('SELECT * FROM app_tokens WHERE hash = $1', [hash]))[0];
    return r
      ? {
          hash: str(r.hash),
          kind: r.kind as 'app' | 'user',
          appId: str(r.app_id),
          username: (r.username as string | null) ?? null,
          cid: (r.cid as string | null) ?? null,
          expiresAt: num(r.expires_at),
        }
      : null;
  }

  async deleteExpiredAppTokens(now: number): Promise<number> {
    return this.count('DELETE FROM app_tokens WHERE expires_at <= $1', [now]);
  }

  async setRetained(r: RetainedRecord): Promise<void> {
    if (r.body.length === 0) {
      await this.q('DELETE FROM retained WHERE topic = $1', [r.topic]);
      return;
    }
    await this.q(
      `INSERT INTO retained (topic, body, qos, properties, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (topic) DO UPDATE SET body = excluded.body, qos = excluded.qos, properties = excluded.properties, updated_at = excluded.updated_at`,
      [r.topic, r.body, r.qos, r.properties, r.updatedAt],
    );
  }

  async listRetained(): Promise<RetainedRecord[]> {
    return (await this.q('SELECT * FROM retained ORDER BY topic')).map((r) => ({
      topic: str(r.topic),
      body: r.body as Buffer,
      qos: num(r.qos),
      properties: str(r.properties),
      updatedAt: num(r.updated_at),
    }));
  }

  async saveMqttSession(m: MqttSessionRecord): Promise<void> {
    await this.q(
      `INSERT INTO mqtt_sessions (client_id, owner, expiry_seconds, disconnected_at, subscriptions, qos2_in, node) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner, expiry_seconds = excluded.expiry_seconds,
         disconnected_at = excluded.disconnected_at, subscriptions = excluded.subscriptions, qos2_in = excluded.qos2_in, node = excluded.node`,
      [m.clientId, m.owner, m.expirySeconds, m.disconnectedAt, JSON.stringify(m.subscriptions), JSON.stringify(m.qos2In), m.node],
    );
  }

  async deleteMqttSession(clientId: string): Promise<void> {
    await this.q('DELETE FROM mqtt_sessions WHERE client_id = $1', [clientId]);
  }

  async listMqttSessions(): Promise<MqttSessionRecord[]> {
    return (await this.q('SELECT * FROM mqtt_sessions ORDER BY client_id')).map(toMqttSession);
  }

  async getMqttSession(clientId: string): Promise<MqttSessionRecord | null> {
    const r = (await this.q('SELECT * FROM mqtt_sessions WHERE client_id = $1', [clientId]))[0];
    return r ? toMqttSession(r) : null;
  }

  async adoptMqttSessions(node: string, liveNodes: readonly string[]): Promise<MqttSessionRecord[]> {
    const rows = await this.q(
      `UPDATE mqtt_sessions SET node = $1 WHERE client_id IN (
         SELECT client_id FROM mqtt_sessions WHERE node IS NULL OR NOT (node = ANY($2::text[])) FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [node, liveNodes],
    );
    return rows.map(toMqttSession).sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
  }

  async enqueueMqtt(m: Omit<MqttQueuedRecord, 'id'>): Promise<string> {
    const rows = await this.q(
      'INSERT INTO mqtt_queue (client_id, topic, body, qos, properties, created_at, packet_id, released) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id',
      [m.clientId, m.topic, m.body, m.qos, m.properties, m.createdAt, m.packetId, m.released],
    );
    return String(rows[0]!.id);
  }

  async setMqttQueuedState(id: string, packetId: number, released: boolean): Promise<void> {
    const n = rowId(id);
    if (n !== null) await this.q('UPDATE mqtt_queue SET packet_id = $1, released = $2 WHERE id = $3', [packetId, released, n]);
  }

  async loadMqttQueue(clientId: string, limit: number): Promise<MqttQueuedRecord[]> {
    return (await this.q('SELECT * FROM mqtt_queue WHERE client_id = $1 ORDER BY id LIMIT $2', [clientId, limit])).map((r) => ({
      id: String(r.id),
      clientId: str(r.client_id),
      topic: str(r.topic),
      body: r.body as Buffer,
      qos: num(r.qos),
      properties: str(r.properties),
      createdAt: num(r.created_at),
      packetId: numOrNull(r.packet_id),
      released: r.released === true,
    }));
  }

  async deleteMqttQueued(id: string): Promise<void> {
    const n = rowId(id);
    if (n !== null) await this.q('DELETE FROM mqtt_queue WHERE id = $1', [n]);
  }

  // ---- queues ----------------------------------------------------------------

  async enqueue(m: NewQueuedMessage, claimedBy?: string): Promise<string> {
    const rows = await this.q('INSERT INTO queue_messages (queue, body, content_type, headers, created_at, claimed_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id', [
      m.queue,
      m.body,
      m.contentType,
      JSON.stringify(m.headers),
      m.createdAt,
      claimedBy ?? null,
    ]);
    return String(rows[0]!.id);
  }

  async claimQueue(queue: string, owner: string, limit: number): Promise<QueuedMessage[]> {
    const rows = await this.q(
      `UPDATE queue_messages SET claimed_by = $1 WHERE id IN (
         SELECT id FROM queue_messages WHERE queue = $2 AND claimed_by IS NULL ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [owner, queue, limit],
    );
    return rows.map(toQueued).sort((a, b) => Number(a.id) - Number(b.id));
  }

  async releaseQueued(ids: readonly string[], redelivered: boolean): Promise<void> {
    const valid = ids.filter((id) => rowId(id) !== null);
    if (valid.length > 0) await this.q('UPDATE queue_messages SET claimed_by = NULL, redelivered = redelivered OR $2 WHERE id = ANY($1::bigint[])', [valid, redelivered]);
  }

  async releaseDeadClaims(liveOwners: readonly string[]): Promise<string[]> {
    const rows = await this.q(
      'UPDATE queue_messages SET claimed_by = NULL WHERE claimed_by IS NOT NULL AND NOT (claimed_by = ANY($1::text[])) RETURNING queue',
      [liveOwners],
    );
    return [...new Set(rows.map((r) => str(r.queue)))];
  }

  async dequeue(id: string): Promise<boolean> {
    const n = rowId(id);
    if (n === null) return false;
    return (await this.count('DELETE FROM queue_messages WHERE id = $1', [n])) > 0;
  }
}
