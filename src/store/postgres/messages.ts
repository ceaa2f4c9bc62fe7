/** MessageStore on PostgreSQL (contract: ../messages.ts). */
import type { MessageStore, NewMessage, Receipt } from '../messages.js';
import type { EventsOf } from '../webhooks.js';
import { rowId, toMessage, toReceipt, type MessageRow, type ReceiptRow } from '../rows.js';
import type { Param, PgHandle, Queryable } from './pool.js';
import { writeEvents } from './webhooks.js';
import { PgMessageGroups } from './message-groups.js';

/** Where a delivery status stands on its way forward: PENDING 0, DELIVERED 1, READ 2. */
const rank = (status: string): string => `(CASE ${status} WHEN 'PENDING' THEN 0 WHEN 'DELIVERED' THEN 1 ELSE 2 END)`;

export function postgresMessages(pg: PgHandle): MessageStore {
  /** The delivery rows of several messages in one round trip, by message id. */
  const receiptsOf = async (ids: number[]): Promise<Map<number, Receipt[]>> => {
    const out = new Map<number, Receipt[]>();
    for (const id of ids) out.set(id, []);
    if (ids.length === 0) return out;
    const rows = await pg.rows<ReceiptRow>('SELECT * FROM message_receivers WHERE message_id = ANY($1::bigint[]) ORDER BY receiver', [ids.map(String)]);
    for (const r of rows) out.get(r.message_id)?.push(toReceipt(r));
    return out;
  };

  const groups = new PgMessageGroups(pg, (m, events) => insertMessageAlone(pg, m, events));

  return {
    // Sends that arrive together share one statement and one commit; each resolves once its group is committed.
    insertMessage(m, events) {
      return groups.insert(m, events);
    },

    async getMessage(id) {
      const n = rowId(id);
      if (n === null) return null;
      const r = (await pg.rows<MessageRow>('SELECT * FROM messages WHERE id = $1', [n]))[0];
      if (!r) return null;
      return { ...toMessage(r), receivers: (await receiptsOf([n])).get(n)! };
    },

    async pendingFor(receiver, limit) {
      const rows = await pg.rows<MessageRow>(
        `SELECT m.* FROM message_receivers r JOIN messages m ON m.id = r.message_id
         WHERE r.receiver = $1 AND r.status = 'PENDING' ORDER BY m.id LIMIT $2`,
        [receiver, limit],
      );
      return rows.map(toMessage);
    },

    async setDeliveryStatus(messageId, receiver, status, at, events) {
      const n = rowId(messageId);
      if (n === null) return false;
      const move = async (c: Queryable): Promise<boolean> =>
        ((
          await c.query(
            `UPDATE message_receivers SET status = $1, updated_at = $2
             WHERE message_id = $3 AND receiver = $4 AND ${rank('status')} < ${rank('$1')}`,
            [status, at, n, receiver],
          )
        ).rowCount ?? 0) > 0;
      if (!events || events.length === 0) return move(pg.direct);
      return pg.tx(async (c) => {
        const moved = await move(c);
        if (moved) await writeEvents(c, events);
        return moved;
      });
    },

    async queryMessages(q) {
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
      const total = (await pg.rows<{ n: number }>(`SELECT COUNT(*)::int AS n FROM messages m ${clause}`, args))[0]!.n;
      const rows = await pg.rows<MessageRow>(`SELECT m.* FROM messages m ${clause} ORDER BY m.id DESC LIMIT ${arg(q.size)} OFFSET ${arg((q.page - 1) * q.size)}`, args);
      const receipts = await receiptsOf(rows.map((r) => r.id));
      const items = rows.map((r) => ({ ...toMessage(r), receivers: receipts.get(r.id)! }));
      return { items, total, page: q.page, size: q.size };
    },

    async deleteMessage(id) {
      const n = rowId(id);
      if (n === null) return false;
      return (await pg.count('DELETE FROM messages WHERE id = $1', [n])) > 0;
    },

    async pruneMessages(olderThan, maxPerReceiver, batch) {
      return pg.tx(async (c) => {
        let removed =
          (await c.query('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < $1 ORDER BY id LIMIT $2)', [olderThan, batch])).rowCount ?? 0;
        const crowded = (await c.query<{ receiver: string }>('SELECT receiver FROM message_receivers GROUP BY receiver HAVING COUNT(*) > $1 LIMIT $2', [maxPerReceiver, batch])).rows;
        for (const { receiver } of crowded) {
          const ids = (
            await c.query<{ message_id: number }>('SELECT message_id FROM message_receivers WHERE receiver = $1 ORDER BY message_id DESC LIMIT $2 OFFSET $3', [
              receiver,
              batch,
              maxPerReceiver,
            ])
          ).rows.map((r) => String(r.message_id));
          if (ids.length === 0) continue;
          removed += (await c.query('DELETE FROM message_receivers WHERE receiver = $1 AND message_id = ANY($2::bigint[])', [receiver, ids])).rowCount ?? 0;
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
    },
  };
}

/** One send in its own transaction: a group's fallback (message-groups.ts). */
export function insertMessageAlone(pg: PgHandle, m: NewMessage, events: EventsOf<string> | undefined): Promise<string> {
  return pg.tx(async (c) => {
    const id = (
      await c.query<{ id: number }>('INSERT INTO messages (sender, title, content, type, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id', [
        m.sender,
        m.title,
        m.content,
        m.type,
        m.createdAt,
      ])
    ).rows[0]!.id;
    if (m.receivers.length > 0) {
      await c.query(
        `INSERT INTO message_receivers (message_id, receiver, status, updated_at)
         SELECT $1, r, 'PENDING', $2 FROM unnest($3::text[]) AS r ON CONFLICT DO NOTHING`,
        [id, m.createdAt, m.receivers],
      );
    }
    if (events) await writeEvents(c, events(String(id)));
    return String(id);
  });
}
