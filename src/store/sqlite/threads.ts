/** ThreadStore on SQLite (contract: ../threads.ts). */
import type Database from 'better-sqlite3';
import { DuplicateError } from '../errors.js';
import {
  rowId,
  toThread,
  toThreadMember,
  toThreadMessage,
  toThreadReceipt,
  type ThreadMemberRow,
  type ThreadMessageRow,
  type ThreadReceiptRow,
  type ThreadRow,
} from '../rows.js';
import type { ThreadRecord, ThreadStore } from '../threads.js';
import { sqliteEventWriter } from './webhooks.js';

export function sqliteThreads(db: Database.Database): ThreadStore {
  const writeEvents = sqliteEventWriter(db);
  const stmt = {
    insertThread: db.prepare<[string, string, number, number]>(
      "INSERT INTO threads (topic, status, created_by, created_at, last_activity_at) VALUES (?, 'OPEN', ?, ?, ?)",
    ),
    threadById: db.prepare<[number], ThreadRow>('SELECT * FROM threads WHERE id = ?'),
    threadByTopic: db.prepare<[string], ThreadRow>('SELECT * FROM threads WHERE topic = ?'),
    membersOf: db.prepare<[number], ThreadMemberRow>('SELECT thread_id, user_id, role FROM thread_members WHERE thread_id = ? ORDER BY user_id'),
    putMember: db.prepare<[number, string, string]>('INSERT OR REPLACE INTO thread_members (thread_id, user_id, role) VALUES (?, ?, ?)'),
    lastMessage: db.prepare<[number], ThreadMessageRow>('SELECT * FROM thread_messages WHERE thread_id = ? ORDER BY seq DESC LIMIT 1'),
    unread: db.prepare<[number, string, string], { n: number }>(
      `SELECT COUNT(*) AS n FROM thread_messages m
       WHERE m.thread_id = ? AND m.author <> ? AND m.type NOT IN ('READ', 'DELIVERED', 'TYPING', 'PROCESSING') AND m.recalled = 0
         AND NOT EXISTS (SELECT 1 FROM thread_receipts r WHERE r.thread_id = m.thread_id AND r.uid = m.uid AND r.user_id = ? AND r.status = 'READ')`,
    ),
    setStatus: db.prepare<[string, number | null, number, number, string]>(
      'UPDATE threads SET status = ?, closed_at = ?, last_activity_at = ? WHERE id = ? AND status <> ?',
    ),
    idle: db.prepare<[number, number], ThreadRow>("SELECT * FROM threads WHERE status = 'OPEN' AND last_activity_at < ? ORDER BY last_activity_at LIMIT ?"),
    message: db.prepare<[number, string], ThreadMessageRow>('SELECT * FROM thread_messages WHERE thread_id = ? AND uid = ?'),
    insertMessage: db.prepare<[number, string, string, string, string, number]>(
      'INSERT INTO thread_messages (thread_id, uid, type, author, body, created_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    touch: db.prepare<[number, number]>('UPDATE threads SET last_activity_at = ? WHERE id = ?'),
    recall: db.prepare<[number, string]>('UPDATE thread_messages SET recalled = 1 WHERE thread_id = ? AND uid = ? AND recalled = 0'),
    setReceipt: db.prepare<[number, string, string, string, number, string]>(
      `INSERT INTO thread_receipts (thread_id, uid, user_id, status, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (thread_id, uid, user_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
       WHERE thread_receipts.status = 'DELIVERED' AND ? = 'READ'`,
    ),
    receipts: db.prepare<[number, string], ThreadReceiptRow>(
      'SELECT user_id, status, updated_at FROM thread_receipts WHERE thread_id = ? AND uid = ? ORDER BY user_id',
    ),
  };

  /** A thread row with its members, one query each. */
  const thread = (r: ThreadRow): ThreadRecord => toThread(r, stmt.membersOf.all(r.id).map(toThreadMember));

  return {
    async createThread(topic, createdBy, createdAt, members, events) {
      return db.transaction(() => {
        let id: number;
        try {
          id = Number(stmt.insertThread.run(topic, createdBy, createdAt, createdAt).lastInsertRowid);
        } catch (err) {
          if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new DuplicateError(`thread ${topic} already exists`);
          throw err;
        }
        for (const m of members) stmt.putMember.run(id, m.userId, m.role);
        const created = thread(stmt.threadById.get(id)!);
        if (events) writeEvents(events(created));
        return created;
      })();
    },

    async getThread(topic) {
      const r = stmt.threadByTopic.get(topic);
      return r ? thread(r) : null;
    },

    async addThreadMember(threadId, member) {
      const n = rowId(threadId);
      if (n === null) throw new Error(`no thread ${threadId}`);
      stmt.putMember.run(n, member.userId, member.role);
    },

    async listThreads(opts) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (opts.member !== undefined) (where.push('t.id IN (SELECT thread_id FROM thread_members WHERE user_id = ?)'), args.push(opts.member));
      if (opts.status !== undefined) (where.push('t.status = ?'), args.push(opts.status));
      const rows = db
        .prepare<unknown[], ThreadRow>(
          `SELECT t.* FROM threads t ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY t.last_activity_at DESC, t.id DESC LIMIT ?`,
        )
        .all(...args, opts.limit);
      return rows.map((r) => {
        const last = stmt.lastMessage.get(r.id);
        return {
          thread: thread(r),
          lastMessage: last ? toThreadMessage(last) : null,
          unread: opts.member !== undefined ? stmt.unread.get(r.id, opts.member, opts.member)!.n : 0,
        };
      });
    },

    async setThreadStatus(threadId, status, at, events) {
      const n = rowId(threadId);
      if (n === null) return false;
      return db.transaction(() => {
        const changed = stmt.setStatus.run(status, status === 'CLOSED' ? at : null, at, n, status).changes > 0;
        if (changed && events) writeEvents(events);
        return changed;
      })();
    },

    async idleThreads(before, limit) {
      return stmt.idle.all(before, limit).map(thread);
    },

    async addThreadMessage(m, events) {
      const threadId = rowId(m.threadId);
      if (threadId === null) throw new Error(`no thread ${m.threadId}`);
      return db.transaction(() => {
        const existing = stmt.message.get(threadId, m.uid);
        if (existing) return { record: toThreadMessage(existing), duplicate: true };
        const seq = stmt.insertMessage.run(threadId, m.uid, m.type, m.author, m.body, m.createdAt).lastInsertRowid;
        stmt.touch.run(m.createdAt, threadId);
        const record = { ...m, seq: String(seq), recalled: false };
        if (events) writeEvents(events(record));
        return { record, duplicate: false };
      })();
    },

    async getThreadMessage(threadId, uid) {
      const n = rowId(threadId);
      if (n === null) return null;
      const r = stmt.message.get(n, uid);
      return r ? toThreadMessage(r) : null;
    },

    async markRecalled(threadId, uid) {
      const n = rowId(threadId);
      if (n === null) return false;
      return stmt.recall.run(n, uid).changes > 0;
    },

    async threadHistory(threadId, opts) {
      const n = rowId(threadId);
      if (n === null) return [];
      const where = ['thread_id = ?'];
      const args: number[] = [n];
      if (opts.afterSeq !== undefined) (where.push('seq > ?'), args.push(Number(opts.afterSeq)));
      if (opts.beforeSeq !== undefined) (where.push('seq < ?'), args.push(Number(opts.beforeSeq)));
      if (opts.sinceTime !== undefined) (where.push('created_at > ?'), args.push(opts.sinceTime));
      // Reading forward from a point: oldest first. Otherwise: the newest page, returned oldest first.
      const forward = opts.afterSeq !== undefined || opts.sinceTime !== undefined;
      const rows = db
        .prepare<number[], ThreadMessageRow>(`SELECT * FROM thread_messages WHERE ${where.join(' AND ')} ORDER BY seq ${forward ? 'ASC' : 'DESC'} LIMIT ?`)
        .all(...args, opts.limit);
      if (!forward) rows.reverse();
      return rows.map(toThreadMessage);
    },

    async setThreadReceipt(threadId, uid, userId, status, at) {
      const n = rowId(threadId);
      if (n === null) return false;
      return stmt.setReceipt.run(n, uid, userId, status, at, status).changes > 0;
    },

    async threadReceipts(threadId, uid) {
      const n = rowId(threadId);
      if (n === null) return [];
      return stmt.receipts.all(n, uid).map(toThreadReceipt);
    },
  };
}
