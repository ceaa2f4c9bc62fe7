/**
 * Group commit of the message service's sends on PostgreSQL: the sends that
 * arrive in the same event-loop turn, or while groups are being written (two
 * at most), are written together by one statement, each message with its
 * delivery rows, in one transaction, and every send resolves only after that
 * transaction has committed (so an acknowledged send is stored).
 *
 * When the group's statement fails for a reason of its own rows (a value
 * PostgreSQL refuses), nothing of the group is stored, and each of its sends
 * is written again alone, in its own transaction: the failing one fails
 * alone, the others resolve after their own commits. When the database is
 * out of reach, every send of the group fails (none is acknowledged).
 */
import type { NewMessage } from '../messages.js';
import { StoreUnavailableError } from '../errors.js';
import type { EventsOf, NewWebhookEvent } from '../webhooks.js';
import type { PgHandle, Queryable } from './pool.js';
import { writeEvents } from './webhooks.js';

interface Pending {
  message: NewMessage;
  events: EventsOf<string> | undefined;
  resolve(id: string): void;
  reject(err: unknown): void;
}

/** Most sends in one group, and most delivery rows (a send to 10,000 receivers comes alone, or nearly). */
const MAX_SENDS = 512;
const MAX_RECEIVERS = 20_000;
/** Groups written at once: while one waits for PostgreSQL's commit (its WAL flush), the next is sent. */
const MAX_WRITERS = 2;

/**
 * One statement for a whole group: ids drawn from the sequence first (so
 * each send knows its own, by its place in the group), then the messages,
 * then their delivery rows. A data-modifying WITH runs in one snapshot and
 * commits, or fails, as one statement.
 */
const INSERT_GROUP = `
  WITH src AS (
    SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS id, u.n, u.sender, u.title, u.content, u.type, u.created_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY AS u(sender, title, content, type, created_at, n)
  ), ins AS (
    INSERT INTO messages (id, sender, title, content, type, created_at)
    SELECT id, sender, title, content, type, created_at FROM src ORDER BY n
  ), rcv AS (
    INSERT INTO message_receivers (message_id, receiver, status, updated_at)
    SELECT src.id, r.receiver, 'PENDING', src.created_at FROM unnest($6::int[], $7::text[]) AS r(n, receiver) JOIN src ON src.n = r.n
    ON CONFLICT DO NOTHING
  )
  SELECT id, n FROM src ORDER BY n`;

/** The group's statement gave not one id per send (it may have committed): its sends fail, none is written again. */
class UnexpectedIds extends Error {
  constructor(sends: number, ids: number) {
    super(`a group of ${sends} messages gave ${ids} ids; none of them is acknowledged`);
  }
}

export class PgMessageGroups {
  private queue: Pending[] = [];
  private scheduled = false;
  private writers = 0;
  /** Groups written and sends in them (tests read them). */
  groups = 0;
  sends = 0;

  constructor(
    private readonly pg: PgHandle,
    /** One send alone in its own transaction: the fallback when a group's statement fails. */
    private readonly single: (message: NewMessage, events: EventsOf<string> | undefined) => Promise<string>,
  ) {}

  insert(message: NewMessage, events: EventsOf<string> | undefined): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.queue.push({ message, events, resolve, reject });
      // While MAX_WRITERS groups are being written, the sends that arrive wait and go in the next.
      if (this.writers < MAX_WRITERS && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          void this.next();
        });
      }
    });
  }

  /** A writer: writes the groups waiting, one at a time, until none waits. */
  private async next(): Promise<void> {
    if (this.writers >= MAX_WRITERS) return;
    this.writers++;
    try {
      while (this.queue.length > 0) await this.write(this.take());
    } finally {
      this.writers--;
    }
  }

  private take(): Pending[] {
    let receivers = 0;
    let n = 0;
    while (n < this.queue.length && n < MAX_SENDS) {
      receivers += this.queue[n]!.message.receivers.length;
      if (n > 0 && receivers > MAX_RECEIVERS) break;
      n++;
    }
    return this.queue.splice(0, n);
  }

  private async write(group: Pending[]): Promise<void> {
    let ids: string[];
    try {
      ids = await this.commit(group);
    } catch (err) {
      if (err instanceof StoreUnavailableError || err instanceof UnexpectedIds || group.length === 1) {
        for (const p of group) p.reject(err);
        return;
      }
      // Nothing of the group was stored; each send alone shows which one PostgreSQL refuses.
      await Promise.all(group.map((p) => this.single(p.message, p.events).then(p.resolve, p.reject)));
      return;
    }
    this.groups++;
    this.sends += group.length;
    group.forEach((p, i) => p.resolve(ids[i]!));
  }

  /** The group's statement (with its webhook events, in one transaction); the ids in group order, once committed. */
  private async commit(group: Pending[]): Promise<string[]> {
    const sender: string[] = [];
    const title: string[] = [];
    const content: string[] = [];
    const type: string[] = [];
    const createdAt: string[] = [];
    const receiverOf: number[] = [];
    const receiver: string[] = [];
    group.forEach(({ message: m }, i) => {
      sender.push(m.sender);
      title.push(m.title);
      content.push(m.content);
      type.push(m.type);
      createdAt.push(String(m.createdAt));
      for (const r of m.receivers) {
        receiverOf.push(i + 1);
        receiver.push(r);
      }
    });
    const params = [sender, title, content, type, createdAt, receiverOf, receiver];
    const run = async (c: Queryable): Promise<string[]> => {
      const rows = (await c.query<{ id: number; n: number }>(INSERT_GROUP, params)).rows;
      if (rows.length !== group.length) throw new UnexpectedIds(group.length, rows.length);
      return rows.map((r) => String(r.id));
    };
    if (!group.some((p) => p.events)) return run(this.pg.direct);
    return this.pg.tx(async (c) => {
      const ids = await run(c);
      const events: NewWebhookEvent[] = [];
      group.forEach((p, i) => {
        if (p.events) events.push(...p.events(ids[i]!));
      });
      await writeEvents(c, events);
      return ids;
    });
  }
}
