import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  DuplicateError,
  rowId,
  type DeliveryStatus,
  type MessageQuery,
  type MessageRecord,
  type NewMessage,
  type NewUser,
  type NewQueuedMessage,
  type Page,
  type QueuedMessage,
  type AppRecord,
  type AppTokenRecord,
  type RetainedRecord,
  type MqttSessionRecord,
  type MqttSubscriptionRecord,
  type MqttQueuedRecord,
  type NewThreadMessage,
  type ThreadMember,
  type ThreadMessageRecord,
  type ThreadRecord,
  type ThreadRole,
  type ThreadStatus,
  type ThreadSummary,
  type Receipt,
  type Role,
  type Store,
  type StoredMessage,
  type TokenRecord,
  type UserPatch,
  type UserRecord,
} from '../store.js';
import { SQLITE_MIGRATIONS } from './migrations.js';

interface UserRow {
  id: number;
  name: string;
  role: string;
  password_hash: string;
  disabled: number;
  created_at: number;
  tokens_valid_after: number;
}
interface TokenRow {
  hash: string;
  user_id: string;
  created_at: number;
  last_used_at: number;
  expires_at: number | null;
  idle_expiry: number;
}
interface MessageRow {
  id: number;
  sender: string;
  title: string;
  content: string;
  type: string;
  created_at: number;
}
interface QueueRow {
  id: number;
  queue: string;
  body: Buffer;
  content_type: string | null;
  headers: string;
  created_at: number;
  redelivered: number;
}
interface ThreadRow {
  id: number;
  topic: string;
  status: string;
  created_by: string;
  created_at: number;
  last_activity_at: number;
  closed_at: number | null;
}
interface ThreadMessageRow {
  seq: number;
  thread_id: number;
  uid: string;
  type: string;
  author: string;
  body: string;
  created_at: number;
  recalled: number;
}
const toThreadMessage = (r: ThreadMessageRow): ThreadMessageRecord => ({
  seq: String(r.seq),
  threadId: String(r.thread_id),
  uid: r.uid,
  type: r.type,
  author: r.author,
  body: r.body,
  createdAt: r.created_at,
  recalled: r.recalled !== 0,
});
interface MqttSessionRow {
  client_id: string;
  owner: string;
  expiry_seconds: number;
  disconnected_at: number | null;
  subscriptions: string;
  qos2_in: string;
  node: string | null;
}
const toMqttSession = (r: MqttSessionRow): MqttSessionRecord => ({
  clientId: r.client_id,
  owner: r.owner,
  expirySeconds: r.expiry_seconds,
  disconnectedAt: r.disconnected_at,
  subscriptions: JSON.parse(r.subscriptions) as MqttSubscriptionRecord[],
  qos2In: JSON.parse(r.qos2_in) as number[],
  node: r.node,
});
interface ReceiptRow {
  message_id: number;
  receiver: string;
  status: string;
  updated_at: number;
}

const toUser = (r: UserRow): UserRecord => ({
  id: String(r.id),
  name: r.name,
  role: r.role as Role,
  passwordHash: r.password_hash,
  disabled: r.disabled !== 0,
  createdAt: r.created_at,
  tokensValidAfter: r.tokens_valid_after,
});
const toToken = (r: TokenRow): TokenRecord => ({
  hash: r.hash,
  userId: r.user_id,
  createdAt: r.created_at,
  lastUsedAt: r.last_used_at,
  expiresAt: r.expires_at,
  idleExpiry: r.idle_expiry !== 0,
});
const toMessage = (r: MessageRow): StoredMessage => ({
  id: String(r.id),
  sender: r.sender,
  title: r.title,
  content: r.content,
  type: r.type,
  createdAt: r.created_at,
});

export interface SqliteStoreOptions {
  /** Directory holding herald.db; ':memory:' for a throw-away database. */
  dataDir: string;
  synchronous?: 'FULL' | 'NORMAL';
  /** Largest the database may grow, in MiB (0 or absent: no limit). */
  maxSizeMb?: number;
}

/**
 * SQLite Store on better-sqlite3. Calls are synchronous underneath (one
 * connection, WAL), so each promise resolves after the commit, which with
 * synchronous=FULL is also after the fsync.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(options: SqliteStoreOptions) {
    let file = ':memory:';
    if (options.dataDir !== ':memory:') {
      mkdirSync(options.dataDir, { recursive: true });
      file = join(options.dataDir, 'herald.db');
    }
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    if (options.maxSizeMb) {
      // Per connection, not stored in the file; SQLite keeps it at least the current size.
      const pageSize = this.db.pragma('page_size', { simple: true }) as number;
      this.db.pragma(`max_page_count = ${Math.max(1, Math.floor((options.maxSizeMb * 1024 * 1024) / pageSize))}`);
    }
    const db = this.db;
    this.stmts = {
      insertUser: db.prepare<[string, string, string, number]>(
        'INSERT INTO users (name, role, password_hash, disabled, created_at) VALUES (?, ?, ?, 0, ?)',
      ),
      userById: db.prepare<[number], UserRow>('SELECT * FROM users WHERE id = ?'),
      userByName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE name = ?'),
      listUsers: db.prepare<[], UserRow>('SELECT * FROM users ORDER BY id'),
      countUsers: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM users'),
      insertToken: db.prepare<[string, string, number, number, number | null, number]>(
        'INSERT INTO tokens (hash, user_id, created_at, last_used_at, expires_at, idle_expiry) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      getToken: db.prepare<[string], TokenRow>('SELECT * FROM tokens WHERE hash = ?'),
      touchToken: db.prepare<[number, string, number]>(
        'UPDATE tokens SET last_used_at = ? WHERE hash = ? AND last_used_at < ?',
      ),
      deleteToken: db.prepare<[string]>('DELETE FROM tokens WHERE hash = ?'),
      tokensOfUser: db.prepare<[string], { hash: string }>('SELECT hash FROM tokens WHERE user_id = ?'),
      deleteTokensOfUser: db.prepare<[string]>('DELETE FROM tokens WHERE user_id = ?'),
      deleteDeadTokens: db.prepare<[number, number]>(
        'DELETE FROM tokens WHERE (idle_expiry = 1 AND last_used_at < ?) OR (expires_at IS NOT NULL AND expires_at <= ?)',
      ),
      insertMessage: db.prepare<[string, string, string, string, number]>(
        'INSERT INTO messages (sender, title, content, type, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      insertReceipt: db.prepare<[number | bigint, string, number]>(
        "INSERT OR IGNORE INTO message_receivers (message_id, receiver, status, updated_at) VALUES (?, ?, 'PENDING', ?)",
      ),
      getMessage: db.prepare<[number], MessageRow>('SELECT * FROM messages WHERE id = ?'),
      receiptsOf: db.prepare<[number], ReceiptRow>(
        'SELECT * FROM message_receivers WHERE message_id = ? ORDER BY receiver',
      ),
      pendingFor: db.prepare<[string, number], MessageRow>(
        `SELECT m.* FROM message_receivers r JOIN messages m ON m.id = r.message_id
         WHERE r.receiver = ? AND r.status = 'PENDING' ORDER BY m.id LIMIT ?`,
      ),
      setStatus: db.prepare<[string, number, number, string, string]>(
        `UPDATE message_receivers SET status = ?, updated_at = ?
         WHERE message_id = ? AND receiver = ?
           AND (CASE status WHEN 'PENDING' THEN 0 WHEN 'DELIVERED' THEN 1 ELSE 2 END)
             < (CASE ? WHEN 'PENDING' THEN 0 WHEN 'DELIVERED' THEN 1 ELSE 2 END)`,
      ),
      deleteMessage: db.prepare<[number]>('DELETE FROM messages WHERE id = ?'),
      enqueue: db.prepare<[string, Buffer, string | null, string, number, string | null]>(
        'INSERT INTO queue_messages (queue, body, content_type, headers, created_at, claimed_by) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      claimQueue: db.prepare<[string, string, number], QueueRow>(
        `UPDATE queue_messages SET claimed_by = ? WHERE id IN
           (SELECT id FROM queue_messages WHERE queue = ? AND claimed_by IS NULL ORDER BY id LIMIT ?)
         RETURNING *`,
      ),
      releaseQueued: db.prepare<[number, number]>('UPDATE queue_messages SET claimed_by = NULL, redelivered = MAX(redelivered, ?) WHERE id = ?'),
      dequeue: db.prepare<[number]>('DELETE FROM queue_messages WHERE id = ?'),
    };
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const row = this.db.prepare<[], { v: number | null }>('SELECT MAX(version) AS v FROM schema_version').get();
    const current = row?.v ?? 0;
    for (const m of SQLITE_MIGRATIONS) {
      if (m.version <= current) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(m.version);
      })();
    }
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }

  async createUser(user: NewUser): Promise<UserRecord> {
    try {
      const info = this.stmts.insertUser.run(user.name, user.role, user.passwordHash, user.createdAt);
      return toUser(this.stmts.userById.get(Number(info.lastInsertRowid))!);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new DuplicateError(`a user named "${user.name}" already exists`);
      }
      throw err;
    }
  }

  async getUserById(id: string): Promise<UserRecord | null> {
    const n = rowId(id);
    if (n === null) return null;
    const r = this.stmts.userById.get(n);
    return r ? toUser(r) : null;
  }

  async getUserByName(name: string): Promise<UserRecord | null> {
    const r = this.stmts.userByName.get(name);
    return r ? toUser(r) : null;
  }

  async listUsers(): Promise<UserRecord[]> {
    return this.stmts.listUsers.all().map(toUser);
  }

  async countUsers(): Promise<number> {
    return this.stmts.countUsers.get()!.n;
  }

  async updateUser(id: string, patch: UserPatch): Promise<UserRecord | null> {
    const n = rowId(id);
    if (n === null) return null;
    const sets: string[] = [];
    const args: (string | number)[] = [];
    if (patch.role !== undefined) (sets.push('role = ?'), args.push(patch.role));
    if (patch.passwordHash !== undefined) (sets.push('password_hash = ?'), args.push(patch.passwordHash));
    if (patch.disabled !== undefined) (sets.push('disabled = ?'), args.push(patch.disabled ? 1 : 0));
    if (patch.tokensValidAfter !== undefined) (sets.push('tokens_valid_after = ?'), args.push(patch.tokensValidAfter));
    if (sets.length > 0) this.db.prepare(`UPDATE users SET ${sets.join(', ')} WHERE id = ?`).run(...args, n);
    const r = this.stmts.userById.get(n);
    return r ? toUser(r) : null;
  }

  async insertToken(t: TokenRecord): Promise<void> {
    this.stmts.insertToken.run(t.hash, t.userId, t.createdAt, t.lastUsedAt, t.expiresAt, t.idleExpiry ? 1 : 0);
  }

  async getToken(hash: string): Promise<TokenRecord | null> {
    const r = this.stmts.getToken.get(hash);
    return r ? toToken(r) : null;
  }

  async touchToken(hash: string, lastUsedAt: number): Promise<void> {
    this.stmts.touchToken.run(lastUsedAt, hash, lastUsedAt);
  }

  async deleteToken(hash: string): Promise<boolean> {
    return this.stmts.deleteToken.run(hash).changes > 0;
  }

  async deleteTokensOfUser(userId: string): Promise<string[]> {
    return this.db.transaction(() => {
      const hashes = this.stmts.tokensOfUser.all(userId).map((r) => r.hash);
      this.stmts.deleteTokensOfUser.run(userId);
      return hashes;
    })();
  }

  async deleteDeadTokens(idleBefore: number, now: number): Promise<number> {
    return this.stmts.deleteDeadTokens.run(idleBefore, now).changes;
  }

  async insertMessage(m: NewMessage): Promise<string> {
    return this.db.transaction(() => {
      const info = this.stmts.insertMessage.run(m.sender, m.title, m.content, m.type, m.createdAt);
      for (const r of m.receivers) this.stmts.insertReceipt.run(info.lastInsertRowid, r, m.createdAt);
      return String(info.lastInsertRowid);
    })();
  }

  private receiptsOf(id: number): Receipt[] {
    return this.stmts.receiptsOf.all(id).map((r) => ({
      receiver: r.receiver,
      status: r.status as DeliveryStatus,
      updatedAt: r.updated_at,
    }));
  }

  async getMessage(id: string): Promise<MessageRecord | null> {
    const n = rowId(id);
    if (n === null) return null;
    const r = this.stmts.getMessage.get(n);
    return r ? { ...toMessage(r), receivers: this.receiptsOf(n) } : null;
  }

  async pendingFor(receiver: string, limit: number): Promise<StoredMessage[]> {
    return this.stmts.pendingFor.all(receiver, limit).map(toMessage);
  }

  async setDeliveryStatus(messageId: string, receiver: string, status: DeliveryStatus, at: number): Promise<boolean> {
    const n = rowId(messageId);
    if (n === null) return false;
    return this.stmts.setStatus.run(status, at, n, receiver, status).changes > 0;
  }

  async queryMessages(q: MessageQuery): Promise<Page<MessageRecord>> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.sender !== undefined) (where.push('m.sender = ?'), args.push(q.sender));
    if (q.type !== undefined) (where.push('m.type = ?'), args.push(q.type));
    if (q.from !== undefined) (where.push('m.created_at >= ?'), args.push(q.from));
    if (q.to !== undefined) (where.push('m.created_at <= ?'), args.push(q.to));
    if (q.status !== undefined || q.receiver !== undefined) {
      const sub: string[] = ['r.message_id = m.id'];
      if (q.status !== undefined) (sub.push('r.status = ?'), args.push(q.status));
      if (q.receiver !== undefined) (sub.push('r.receiver = ?'), args.push(q.receiver));
      where.push(`EXISTS (SELECT 1 FROM message_receivers r WHERE ${sub.join(' AND ')})`);
    }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    return this.db.transaction(() => {
      const total = this.db.prepare<unknown[], { n: number }>(`SELECT COUNT(*) AS n FROM messages m ${clause}`).get(...args)!.n;
      const rows = this.db
        .prepare<unknown[], MessageRow>(`SELECT m.* FROM messages m ${clause} ORDER BY m.id DESC LIMIT ? OFFSET ?`)
        .all(...args, q.size, (q.page - 1) * q.size);
      const items = rows.map((r) => ({ ...toMessage(r), receivers: this.receiptsOf(r.id) }));
      return { items, total, page: q.page, size: q.size };
    })();
  }

  async deleteMessage(id: string): Promise<boolean> {
    const n = rowId(id);
    if (n === null) return false;
    return this.stmts.deleteMessage.run(n).changes > 0;
  }

  async pruneMessages(olderThan: number, maxPerReceiver: number, batch: number): Promise<number> {
    return this.db.transaction(() => {
      let removed = this.db
        .prepare<[number, number]>('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < ? ORDER BY id LIMIT ?)')
        .run(olderThan, batch).changes;
      const crowded = this.db
        .prepare<[number, number], { receiver: string }>(
          'SELECT receiver FROM message_receivers GROUP BY receiver HAVING COUNT(*) > ? LIMIT ?',
        )
        .all(maxPerReceiver, batch);
      for (const { receiver } of crowded) {
        const ids = this.db
          .prepare<[string, number, number], { message_id: number }>(
            'SELECT message_id FROM message_receivers WHERE receiver = ? ORDER BY message_id DESC LIMIT ? OFFSET ?',
          )
          .all(receiver, batch, maxPerReceiver)
          .map((r) => r.message_id);
        if (ids.length === 0) continue;
        const list = ids.join(',');
        removed += this.db.prepare<[string]>(`DELETE FROM message_receivers WHERE receiver = ? AND message_id IN (${list})`).run(receiver).changes;
        removed += this.db
          .prepare(`DELETE FROM messages WHERE id IN (${list}) AND NOT EXISTS (SELECT 1 FROM message_receivers r WHERE r.message_id = messages.id)`)
          .run().changes;
      }
      return removed;
    })();
  }

  private threadFromRow(r: ThreadRow): ThreadRecord {
    const members = this.db
      .prepare<[number], { user_id: string; role: string }>('SELECT user_id, role FROM thread_members WHERE thread_id = ? ORDER BY user_id')
      .all(r.id)
      .map((m) => ({ userId: m.user_id, role: m.role as ThreadRole }));
    return {
      id: String(r.id),
      topic: r.topic,
      status: r.status as ThreadStatus,
      createdBy: r.created_by,
      createdAt: r.created_at,
      lastActivityAt: r.last_activity_at,
      closedAt: r.closed_at,
      members,
    };
  }

  async createThread(topic: string, createdBy: string, createdAt: number, members: ThreadMember[]): Promise<ThreadRecord> {
    return this.db.transaction(() => {
      let id: number;
      try {
        id = Number(
          this.db
            .prepare<[string, string, number, number]>(
              "INSERT INTO threads (topic, status, created_by, created_at, last_activity_at) VALUES (?, 'OPEN', ?, ?, ?)",
            )
            .run(topic, createdBy, createdAt, createdAt).lastInsertRowid,
        );
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new DuplicateError(`thread ${topic} already exists`);
        throw err;
      }
      const add = this.db.prepare<[number, string, string]>('INSERT OR REPLACE INTO thread_members (thread_id, user_id, role) VALUES (?, ?, ?)');
      for (const m of members) add.run(id, m.userId, m.role);
      return this.threadFromRow(this.db.prepare<[number], ThreadRow>('SELECT * FROM threads WHERE id = ?').get(id)!);
    })();
  }

  async getThread(topic: string): Promise<ThreadRecord | null> {
    const r = this.db.prepare<[string], ThreadRow>('SELECT * FROM threads WHERE topic = ?').get(topic);
    return r ? this.threadFromRow(r) : null;
  }

  async addThreadMember(threadId: string, member: ThreadMember): Promise<void> {
    const n = rowId(threadId);
    if (n === null) throw new Error(`no thread ${threadId}`);
    this.db.prepare<[number, string, string]>('INSERT OR REPLACE INTO thread_members (thread_id, user_id, role) VALUES (?, ?, ?)').run(n, member.userId, member.role);
  }

  async listThreads(opts: { member?: string; status?: ThreadStatus; limit: number }): Promise<ThreadSummary[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (opts.member !== undefined) (where.push('t.id IN (SELECT thread_id FROM thread_members WHERE user_id = ?)'), args.push(opts.member));
    if (opts.status !== undefined) (where.push('t.status = ?'), args.push(opts.status));
    const rows = this.db
      .prepare<unknown[], ThreadRow>(
        `SELECT t.* FROM threads t ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY t.last_activity_at DESC, t.id DESC LIMIT ?`,
      )
      .all(...args, opts.limit);
    const last = this.db.prepare<[number], ThreadMessageRow>('SELECT * FROM thread_messages WHERE thread_id = ? ORDER BY seq DESC LIMIT 1');
    const unread = this.db.prepare<[number, string, string], { n: number }>(
      `SELECT COUNT(*) AS n FROM thread_messages m
       WHERE m.thread_id = ? AND m.author <> ? AND m.type NOT IN ('READ', 'DELIVERED', 'TYPING', 'PROCESSING') AND m.recalled = 0
         AND NOT EXISTS (SELECT 1 FROM thread_receipts r WHERE r.thread_id = m.thread_id AND r.uid = m.uid AND r.user_id = ? AND r.status = 'READ')`,
    );
    return rows.map((r) => {
      const l = last.get(r.id);
      return {
        thread: this.threadFromRow(r),
        lastMessage: l ? toThreadMessage(l) : null,
        unread: opts.member !== undefined ? unread.get(r.id, opts.member, opts.member)!.n : 0,
      };
    });
  }

  async setThreadStatus(threadId: string, status: ThreadStatus, at: number): Promise<boolean> {
    const n = rowId(threadId);
    if (n === null) return false;
    return (
      this.db
        .prepare<[string, number | null, number, number, string]>('UPDATE threads SET status = ?, closed_at = ?, last_activity_at = ? WHERE id = ? AND status <> ?')
        .run(status, status === 'CLOSED' ? at : null, at, n, status).changes > 0
    );
  }

  async idleThreads(before: number, limit: number): Promise<ThreadRecord[]> {
    return this.db
      .prepare<[number, number], ThreadRow>("SELECT * FROM threads WHERE status = 'OPEN' AND last_activity_at < ? ORDER BY last_activity_at LIMIT ?")
      .all(before, limit)
      .map((r) => this.threadFromRow(r));
  }

  async addThreadMessage(m: NewThreadMessage): Promise<{ record: ThreadMessageRecord; duplicate: boolean }> {
    const threadId = rowId(m.threadId);
    if (threadId === null) throw new Error(`no thread ${m.threadId}`);
    return this.db.transaction(() => {
      const existing = this.db.prepare<[number, string], ThreadMessageRow>('SELECT * FROM thread_messages WHERE thread_id = ? AND uid = ?').get(threadId, m.uid);
      if (existing) return { record: toThreadMessage(existing), duplicate: true };
      const seq = this.db
        .prepare<[number, string, string, string, string, number]>(
          'INSERT INTO thread_messages (thread_id, uid, type, author, body, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        )
        .run(threadId, m.uid, m.type, m.author, m.body, m.createdAt).lastInsertRowid;
      this.db.prepare<[number, number]>('UPDATE threads SET last_activity_at = ? WHERE id = ?').run(m.createdAt, threadId);
      return { record: { ...m, seq: String(seq), recalled: false }, duplicate: false };
    })();
  }

  async getThreadMessage(threadId: string, uid: string): Promise<ThreadMessageRecord | null> {
    const n = rowId(threadId);
    if (n === null) return null;
    const r = this.db.prepare<[number, string], ThreadMessageRow>('SELECT * FROM thread_messages WHERE thread_id = ? AND uid = ?').get(n, uid);
    return r ? toThreadMessage(r) : null;
  }

  async markRecalled(threadId: string, uid: string): Promise<boolean> {
    const n = rowId(threadId);
    if (n === null) return false;
    return this.db.prepare<[number, string]>('UPDATE thread_messages SET recalled = 1 WHERE thread_id = ? AND uid = ? AND recalled = 0').run(n, uid).changes > 0;
  }

  async threadHistory(threadId: string, opts: { afterSeq?: string; beforeSeq?: string; sinceTime?: number; limit: number }): Promise<ThreadMessageRecord[]> {
    const n = rowId(threadId);
    if (n === null) return [];
    const where = ['thread_id = ?'];
    const args: number[] = [n];
    if (opts.afterSeq !== undefined) (where.push('seq > ?'), args.push(Number(opts.afterSeq)));
    if (opts.beforeSeq !== undefined) (where.push('seq < ?'), args.push(Number(opts.beforeSeq)));
    if (opts.sinceTime !== undefined) (where.push('created_at > ?'), args.push(opts.sinceTime));
    // Reading forward from a point: oldest first. Otherwise: the newest page, returned oldest first.
    const forward = opts.afterSeq !== undefined || opts.sinceTime !== undefined;
    const rows = this.db
      .prepare<number[], ThreadMessageRow>(`SELECT * FROM thread_messages WHERE ${where.join(' AND ')} ORDER BY seq ${forward ? 'ASC' : 'DESC'} LIMIT ?`)
      .all(...args, opts.limit);
    if (!forward) rows.reverse();
    return rows.map(toThreadMessage);
  }

  async setThreadReceipt(threadId: string, uid: string, userId: string, status: 'DELIVERED' | 'READ', at: number): Promise<boolean> {
    const n = rowId(threadId);
    if (n === null) return false;
    return (
      this.db
        .prepare<[number, string, string, string, number, string]>(
          `INSERT INTO thread_receipts (thread_id, uid, user_id, status, updated_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (thread_id, uid, user_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
           WHERE thread_receipts.status = 'DELIVERED' AND ? = 'READ'`,
        )
        .run(n, uid, userId, status, at, status).changes > 0
    );
  }

  async threadReceipts(threadId: string, uid: string): Promise<{ userId: string; status: 'DELIVERED' | 'READ'; updatedAt: number }[]> {
    const n = rowId(threadId);
    if (n === null) return [];
    return this.db
      .prepare<[number, string], { user_id: string; status: string; updated_at: number }>(
        'SELECT user_id, status, updated_at FROM thread_receipts WHERE thread_id = ? AND uid = ? ORDER BY user_id',
      )
      .all(n, uid)
      .map((r) => ({ userId: r.user_id, status: r.status as 'DELIVERED' | 'READ', updatedAt: r.updated_at }));
  }

  async createApp(app: AppRecord): Promise<void> {
    try {
      this.db
        .prepare<[string, string, string, string, number]>('INSERT INTO apps (id, name, client_id, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(app.id, app.name, app.clientId, app.secretHash, app.createdAt);
    } catch (err) {
      if (String((err as { code?: string }).code).startsWith('SQLITE_CONSTRAINT')) throw new DuplicateError(`app ${app.id} already exists`);
      throw err;
    }
  }

  private appFromRow(r: { id: string; name: string; client_id: string; secret_hash: string; created_at: number } | undefined): AppRecord | null {
    return r ? { id: r.id, name: r.name, clientId: r.client_id, secretHash: r.secret_hash, createdAt: r.created_at } : null;
  }

  async getApp(id: string): Promise<AppRecord | null> {
    return this.appFromRow(this.db.prepare<[string], { id: string; name: string; client_id: string; secret_hash: string; created_at: number }>('SELECT * FROM apps WHERE id = ?').get(id));
  }

  async getAppByClientId(clientId: string): Promise<AppRecord | null> {
    return this.appFromRow(
      this.db.prepare<[string], { id: string; name: string; client_id: string; secret_hash: string; created_at: number }>('SELECT * FROM apps WHERE client_id = ?').get(clientId),
    );
  }

  async listApps(): Promise<AppRecord[]> {
    return this.db
      .prepare<[], { id: string; name: string; client_id: string; secret_hash: string; created_at: number }>('SELECT * FROM apps ORDER BY created_at, id')
      .all()
      .map((r) => this.appFromRow(r)!);
  }

  async insertAppToken(t: AppTokenRecord): Promise<void> {
    this.db
      .prepare<[string, string, string, string | null, string | null, number]>(
        'INSERT INTO app_tokens (hash, kind, app_id, username, cid, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(t.hash, t.kind, t.appId, t.username, t.cid, t.expiresAt);
  }

  async getAppToken(hash: string): Promise<AppTokenRecord | null> {
    const r = this.db
      .prepare<[string], { hash: string; kind: string; app_id: string; username: string | null; cid: string | null; expires_at: number }>('SELECT * FROM app_tokens WHERE hash = ?')
      .get(hash);
    return r ? { hash: r.hash, kind: r.kind as 'app' | 'user', appId: r.app_id, username: r.username, cid: r.cid, expiresAt: r.expires_at } : null;
  }

  async deleteExpiredAppTokens(now: number): Promise<number> {
    return this.db.prepare<[number]>('DELETE FROM app_tokens WHERE expires_at <= ?').run(now).changes;
  }

  async setRetained(r: RetainedRecord): Promise<void> {
    if (r.body.length === 0) {
      this.db.prepare<[string]>('DELETE FROM retained WHERE topic = ?').run(r.topic);
      return;
    }
    this.db
      .prepare<[string, Buffer, number, string, number]>(
        'INSERT INTO retained (topic, body, qos, properties, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic) DO UPDATE SET body = excluded.body, qos = excluded.qos, properties = excluded.properties, updated_at = excluded.updated_at',
      )
      .run(r.topic, r.body, r.qos, r.properties, r.updatedAt);
  }

  async listRetained(): Promise<RetainedRecord[]> {
    return this.db
      .prepare<[], { topic: string; body: Buffer; qos: number; properties: string; updated_at: number }>('SELECT * FROM retained ORDER BY topic')
      .all()
      .map((r) => ({ topic: r.topic, body: r.body, qos: r.qos, properties: r.properties, updatedAt: r.updated_at }));
  }

  async saveMqttSession(m: MqttSessionRecord): Promise<void> {
    this.db
      .prepare<[string, string, number, number | null, string, string, string | null]>(
        `INSERT INTO mqtt_sessions (client_id, owner, expiry_seconds, disconnected_at, subscriptions, qos2_in, node) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner, expiry_seconds = excluded.expiry_seconds,
           disconnected_at = excluded.disconnected_at, subscriptions = excluded.subscriptions, qos2_in = excluded.qos2_in, node = excluded.node`,
      )
      .run(m.clientId, m.owner, m.expirySeconds, m.disconnectedAt, JSON.stringify(m.subscriptions), JSON.stringify(m.qos2In), m.node);
  }

  async deleteMqttSession(clientId: string): Promise<void> {
    this.db.prepare<[string]>('DELETE FROM mqtt_sessions WHERE client_id = ?').run(clientId);
  }

  async listMqttSessions(): Promise<MqttSessionRecord[]> {
    return this.db.prepare<[], MqttSessionRow>('SELECT * FROM mqtt_sessions ORDER BY client_id').all().map(toMqttSession);
  }

  async getMqttSession(clientId: string): Promise<MqttSessionRecord | null> {
    const r = this.db.prepare<[string], MqttSessionRow>('SELECT * FROM mqtt_sessions WHERE client_id = ?').get(clientId);
    return r ? toMqttSession(r) : null;
  }

  async adoptMqttSessions(node: string, liveNodes: readonly string[]): Promise<MqttSessionRecord[]> {
    return this.db
      .prepare<[string, string], MqttSessionRow>(
        'UPDATE mqtt_sessions SET node = ? WHERE node IS NULL OR node NOT IN (SELECT value FROM json_each(?)) RETURNING *',
      )
      .all(node, JSON.stringify(liveNodes))
      .map(toMqttSession)
      .sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
  }

  async enqueueMqtt(m: Omit<MqttQueuedRecord, 'id'>): Promise<string> {
    return String(
      this.db
        .prepare<[string, string, Buffer, number, string, number, number | null, number]>(
          'INSERT INTO mqtt_queue (client_id, topic, body, qos, properties, created_at, packet_id, released) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(m.clientId, m.topic, m.body, m.qos, m.properties, m.createdAt, m.packetId, m.released ? 1 : 0).lastInsertRowid,
    );
  }

  async loadMqttQueue(clientId: string, limit: number): Promise<MqttQueuedRecord[]> {
    return this.db
      .prepare<
        [string, number],
        { id: number; client_id: string; topic: string; body: Buffer; qos: number; properties: string; created_at: number; packet_id: number | null; released: number }
      >('SELECT * FROM mqtt_queue WHERE client_id = ? ORDER BY id LIMIT ?')
      .all(clientId, limit)
      .map((r) => ({
        id: String(r.id),
        clientId: r.client_id,
        topic: r.topic,
        body: r.body,
        qos: r.qos,
        properties: r.properties,
        createdAt: r.created_at,
        packetId: r.packet_id,
        released: r.released !== 0,
      }));
  }

  async setMqttQueuedState(id: string, packetId: number, released: boolean): Promise<void> {
    const n = rowId(id);
    if (n !== null) this.db.prepare<[number, number, number]>('UPDATE mqtt_queue SET packet_id = ?, released = ? WHERE id = ?').run(packetId, released ? 1 : 0, n);
  }

  async deleteMqttQueued(id: string): Promise<void> {
    const n = rowId(id);
    if (n !== null) this.db.prepare<[number]>('DELETE FROM mqtt_queue WHERE id = ?').run(n);
  }

  async enqueue(m: NewQueuedMessage, claimedBy?: string): Promise<string> {
    const info = this.stmts.enqueue.run(m.queue, m.body, m.contentType, JSON.stringify(m.headers), m.createdAt, claimedBy ?? null);
    return String(info.lastInsertRowid);
  }

  async claimQueue(queue: string, owner: string, limit: number): Promise<QueuedMessage[]> {
    return this.stmts.claimQueue
      .all(owner, queue, limit)
      .sort((a, b) => a.id - b.id)
      .map((r) => ({
        id: String(r.id),
        queue: r.queue,
        body: r.body,
        contentType: r.content_type,
        headers: JSON.parse(r.headers) as [string, string][],
        createdAt: r.created_at,
        redelivered: r.redelivered !== 0,
      }));
  }

  async releaseQueued(ids: readonly string[], redelivered: boolean): Promise<void> {
    this.db.transaction(() => {
      for (const id of ids) {
        const n = rowId(id);
        if (n !== null) this.stmts.releaseQueued.run(redelivered ? 1 : 0, n);
      }
    })();
  }

  async releaseDeadClaims(liveOwners: readonly string[]): Promise<string[]> {
    const live = JSON.stringify(liveOwners);
    return this.db
      .prepare<[string], { queue: string }>(
        `UPDATE queue_messages SET claimed_by = NULL
         WHERE claimed_by IS NOT NULL AND claimed_by NOT IN (SELECT value FROM json_each(?)) RETURNING queue`,
      )
      .all(live)
      .map((r) => r.queue)
      .filter((q, i, all) => all.indexOf(q) === i);
  }

  async dequeue(id: string): Promise<boolean> {
    const n = rowId(id);
    if (n === null) return false;
    return this.stmts.dequeue.run(n).changes > 0;
  }
}
