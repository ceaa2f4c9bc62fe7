/** ThreadStore on PostgreSQL (contract: ../threads.ts). */
import { DuplicateError } from '../errors.js';
import {
  rowId,
  toThread,
  toThreadMember,
  toThreadMessage,
  toThreadReceipt,
  type Flag,
  type ThreadMemberRow,
  type ThreadMessageRow,
  type ThreadReceiptRow,
  type ThreadRow,
} from '../rows.js';
import type { ThreadMember, ThreadRecord, ThreadStore } from '../threads.js';
import { isUniqueViolation, type Param, type PgHandle, type Queryable } from './pool.js';
import { writeEvents } from './webhooks.js';

const PUT_MEMBER =
  'INSERT INTO thread_members (thread_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT (thread_id, user_id) DO UPDATE SET role = excluded.role';

/** A thread row of listThreads: with its unread count and its last message in `lm_` columns (all null when it has none, hence read only when lm_seq is not). */
type ThreadSummaryRow = ThreadRow & {
  unread: number;
  lm_seq: number | null;
  lm_uid: string;
  lm_type: string;
  lm_author: string;
  lm_body: string;
  lm_created_at: number;
  lm_recalled: Flag;
};

/** The members of several threads in one round trip, by thread id. */
async function membersOf(c: Queryable, ids: number[]): Promise<Map<number, ThreadMember[]>> {
  const out = new Map<number, ThreadMember[]>();
  for (const id of ids) out.set(id, []);
  if (ids.length === 0) return out;
  const rows = (
    await c.query<ThreadMemberRow>('SELECT thread_id, user_id, role FROM thread_members WHERE thread_id = ANY($1::bigint[]) ORDER BY user_id', [ids.map(String)])
  ).rows;
  for (const r of rows) out.get(r.thread_id)?.push(toThreadMember(r));
  return out;
}

/** Thread rows with their members. */
async function threads(c: Queryable, rows: ThreadRow[]): Promise<ThreadRecord[]> {
  const members = await membersOf(
    c,
    rows.map((r) => r.id),
  );
  return rows.map((r) => toThread(r, members.get(r.id)!));
}

export function postgresThreads(pg: PgHandle): ThreadStore {
  return {
    async createThread(topic, createdBy, createdAt, members, events) {
      try {
        return await pg.tx(async (c) => {
          const row = (
            await c.query<ThreadRow>(
              "INSERT INTO threads (topic, status, created_by, created_at, last_activity_at) VALUES ($1, 'OPEN', $2, $3, $3) RETURNING *",
              [topic, createdBy, createdAt],
            )
          ).rows[0]!;
          for (const m of members) await c.query(PUT_MEMBER, [row.id, m.userId, m.role]);
          const created = (await threads(c, [row]))[0]!;
          if (events) await writeEvents(c, events(created));
          return created;
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new DuplicateError(`thread ${topic} already exists`);
        throw err;
      }
    },

    async getThread(topic) {
      const rows = await pg.rows<ThreadRow>('SELECT * FROM threads WHERE topic = $1', [topic]);
      return (await threads(pg.direct, rows))[0] ?? null;
    },

    async addThreadMember(threadId, member) {
      const n = rowId(threadId);
      if (n === null) throw new Error(`no thread ${threadId}`);
      await pg.rows(PUT_MEMBER, [n, member.userId, member.role]);
    },

    /** Two round trips whatever the length: threads with their last message and unread count, then all members. */
    async listThreads(opts) {
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
      const rows = await pg.rows<ThreadSummaryRow>(
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
      const records = await threads(pg.direct, rows);
      return records.map((thread, i) => {
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
        return { thread, lastMessage, unread: r.unread };
      });
    },

    async setThreadStatus(threadId, status, at, events) {
      const n = rowId(threadId);
      if (n === null) return false;
      const set = async (c: Queryable): Promise<boolean> =>
        ((await c.query('UPDATE threads SET status = $1, closed_at = $2, last_activity_at = $3 WHERE id = $4 AND status <> $1', [status, status === 'CLOSED' ? at : null, at, n]))
          .rowCount ?? 0) > 0;
      if (!events || events.length === 0) return set(pg.direct);
      return pg.tx(async (c) => {
        const changed = await set(c);
        if (changed) await writeEvents(c, events);
        return changed;
      });
    },

    async idleThreads(before, limit) {
      const rows = await pg.rows<ThreadRow>("SELECT * FROM threads WHERE status = 'OPEN' AND last_activity_at < $1 ORDER BY last_activity_at LIMIT $2", [before, limit]);
      return threads(pg.direct, rows);
    },

    async addThreadMessage(m, events) {
      const threadId = rowId(m.threadId);
      if (threadId === null) throw new Error(`no thread ${m.threadId}`);
      return pg.tx(async (c) => {
        // With events: the thread's messages are numbered and their events written one transaction at a time, in the same order.
        if (events) await c.query('SELECT 1 FROM threads WHERE id = $1 FOR UPDATE', [threadId]);
        const inserted = (
          await c.query<{ seq: number }>(
            `INSERT INTO thread_messages (thread_id, uid, type, author, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (thread_id, uid) DO NOTHING RETURNING seq`,
            [threadId, m.uid, m.type, m.author, m.body, m.createdAt],
          )
        ).rows[0];
        if (!inserted) {
          const existing = (await c.query<ThreadMessageRow>('SELECT * FROM thread_messages WHERE thread_id = $1 AND uid = $2', [threadId, m.uid])).rows[0]!;
          return { record: toThreadMessage(existing), duplicate: true };
        }
        await c.query('UPDATE threads SET last_activity_at = $1 WHERE id = $2', [m.createdAt, threadId]);
        const record = { ...m, seq: String(inserted.seq), recalled: false };
        if (events) await writeEvents(c, events(record));
        return { record, duplicate: false };
      });
    },

    async getThreadMessage(threadId, uid) {
      const n = rowId(threadId);
      if (n === null) return null;
      const r = (await pg.rows<ThreadMessageRow>('SELECT * FROM thread_messages WHERE thread_id = $1 AND uid = $2', [n, uid]))[0];
      return r ? toThreadMessage(r) : null;
    },

    async markRecalled(threadId, uid) {
      const n = rowId(threadId);
      if (n === null) return false;
      return (await pg.count('UPDATE thread_messages SET recalled = TRUE WHERE thread_id = $1 AND uid = $2 AND NOT recalled', [n, uid])) > 0;
    },

    async threadHistory(threadId, opts) {
      const n = rowId(threadId);
      if (n === null) return [];
      const args: Param[] = [n];
      const arg = (v: Param): string => (args.push(v), `$${args.length}`);
      const where = ['thread_id = $1'];
      if (opts.afterSeq !== undefined) where.push(`seq > ${arg(Number(opts.afterSeq) || 0)}`);
      if (opts.beforeSeq !== undefined) where.push(`seq < ${arg(Number(opts.beforeSeq) || 0)}`);
      if (opts.sinceTime !== undefined) where.push(`created_at > ${arg(opts.sinceTime)}`);
      // Reading forward from a point: oldest first. Otherwise: the newest page, returned oldest first.
      const forward = opts.afterSeq !== undefined || opts.sinceTime !== undefined;
      const rows = await pg.rows<ThreadMessageRow>(
        `SELECT * FROM thread_messages WHERE ${where.join(' AND ')} ORDER BY seq ${forward ? 'ASC' : 'DESC'} LIMIT ${arg(opts.limit)}`,
        args,
      );
      if (!forward) rows.reverse();
      return rows.map(toThreadMessage);
    },

    async setThreadReceipt(threadId, uid, userId, status, at) {
      const n = rowId(threadId);
      if (n === null) return false;
      return (
        (await pg.count(
          `INSERT INTO thread_receipts (thread_id, uid, user_id, status, updated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (thread_id, uid, user_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
           WHERE thread_receipts.status = 'DELIVERED' AND excluded.status = 'READ'`,
          [n, uid, userId, status, at],
        )) > 0
      );
    },

    async threadReceipts(threadId, uid) {
      const n = rowId(threadId);
      if (n === null) return [];
      const rows = await pg.rows<ThreadReceiptRow>('SELECT user_id, status, updated_at FROM thread_receipts WHERE thread_id = $1 AND uid = $2 ORDER BY user_id', [
        n,
        uid,
      ]);
      return rows.map(toThreadReceipt);
    },
  };
}
