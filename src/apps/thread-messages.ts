/**
 * A chat thread's messages as clients write and read them: the JSON shape
 * `{uid, type, content, status, createdAt, channel, extra, thread, user}`,
 * its types, and the checks a message passes before the thread service
 * looks at the thread it names. Pure functions: no store, no broker.
 */
import type { Principal } from '../core/auth.js';
import { AppRefusal } from '../core/broker.js';
import { jsonDepthProblem } from '../core/json-depth.js';
import type { ThreadMessageRecord } from '../store/store.js';

export const THREAD_TYPES = [
  'TEXT',
  'IMAGE',
  'FILE',
  'READ',
  'DELIVERED',
  'TYPING',
  'PROCESSING',
  'RECALL',
  'RATE_SUBMIT',
  'LEAVE_MSG_SUBMIT',
  'TRANSFER',
  'TRANSFER_ACCEPT',
  'TRANSFER_REJECT',
  'INVITE_VISITOR',
  'AUTO_CLOSED',
] as const;
export type ThreadMessageType = (typeof THREAD_TYPES)[number];
/** Shown to those online and never stored (rate-limited per session instead). */
export const EPHEMERAL: ReadonlySet<string> = new Set(['TYPING', 'PROCESSING']);
/** Receipts: `content` names the message they are about. */
export const RECEIPTS: ReadonlySet<string> = new Set(['READ', 'DELIVERED']);

/** The message as broadcast and stored. */
export interface ThreadMessageView {
  id: string;
  uid: string;
  type: string;
  content: string;
  status: string;
  createdAt: string;
  channel: string;
  extra: unknown;
  thread: unknown;
  user: unknown;
  recalled?: boolean;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The fields of a message that passed `readThreadMessage`. */
export interface ThreadMessageFields {
  /** The message as sent. */
  m: Record<string, unknown>;
  uid: string;
  type: string;
  content: string;
  /** The `thread` field as sent (a string or an object with a `topic`), echoed back in the view. */
  threadField: unknown;
  /** The thread it names. */
  threadId: string;
}

/**
 * Parses (when it is JSON text) and checks what a message says of itself:
 * uid, type, content (at most `maxContentBytes`) and the thread it names.
 */
export function readThreadMessage(raw: string | Record<string, unknown>, maxContentBytes: number): ThreadMessageFields {
  let m: Record<string, unknown>;
  if (typeof raw === 'string') {
    // Depth first: a deeply nested body would exhaust the stack when the message is stored (JSON.stringify).
    const deep = jsonDepthProblem(raw);
    if (deep) throw new AppRefusal(`message is not accepted: ${deep}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new AppRefusal('message is not valid JSON');
    }
    if (!isObject(parsed)) throw new AppRefusal('message must be a JSON object with uid, type, content and thread');
    m = parsed;
  } else {
    m = raw;
  }
  const uid = m['uid'];
  if (typeof uid !== 'string' || uid === '' || uid.length > 128) throw new AppRefusal('uid must be a non-empty string of at most 128 characters');
  const type = m['type'];
  if (typeof type !== 'string' || !(THREAD_TYPES as readonly string[]).includes(type)) {
    throw new AppRefusal(`unknown type ${JSON.stringify(type)}; types are ${THREAD_TYPES.join(', ')}`);
  }
  const content = m['content'] ?? '';
  if (typeof content !== 'string') throw new AppRefusal('content must be a string');
  if (Buffer.byteLength(content) > maxContentBytes) {
    throw new AppRefusal(`content is over the ${maxContentBytes}-byte limit`);
  }
  const threadField = m['thread'];
  const threadId = typeof threadField === 'string' ? threadField : isObject(threadField) && typeof threadField['topic'] === 'string' ? threadField['topic'] : undefined;
  if (!threadId) throw new AppRefusal('thread is missing: give the thread object (with its topic) the message belongs to');
  return { m, uid, type, content, threadField, threadId };
}

/**
 * The view of a message `p` sends, once its thread admits it: `user` must
 * be the sender (or absent), `extra` must suit the type; the server stamps
 * the time and `status: SUCCESS`.
 */
export function authoredView(f: ThreadMessageFields, p: Principal, now: number): Omit<ThreadMessageView, 'id'> {
  const { m } = f;
  const user = m['user'];
  if (user !== undefined && !isObject(user)) throw new AppRefusal('user must be an object');
  if (isObject(user) && user['uid'] !== undefined && user['uid'] !== p.userId && user['uid'] !== p.name) {
    throw new AppRefusal(`user.uid ${JSON.stringify(user['uid'])} is not the connected user (${p.name})`);
  }
  const extra = m['extra'] ?? '';
  checkExtra(f.type, extra);
  return {
    uid: f.uid,
    type: f.type,
    content: f.content,
    status: 'SUCCESS',
    createdAt: new Date(now).toISOString(),
    channel: typeof m['channel'] === 'string' ? m['channel'] : 'WEB',
    extra,
    thread: f.threadField,
    user: isObject(user) ? { ...user, uid: user['uid'] ?? p.name } : { uid: p.name },
  };
}

/** RATE_SUBMIT and LEAVE_MSG_SUBMIT carry their details in `extra` (an object, or JSON text of one). */
function checkExtra(type: string, extra: unknown): void {
  if (type !== 'RATE_SUBMIT' && type !== 'LEAVE_MSG_SUBMIT') return;
  let e: unknown = extra;
  if (typeof extra === 'string') {
    const deep = jsonDepthProblem(extra);
    if (deep) throw new AppRefusal(`${type} extra is not accepted: ${deep}`);
    try {
      e = JSON.parse(extra);
    } catch {
      throw new AppRefusal(`${type} needs extra: JSON text of an object`);
    }
  }
  if (!isObject(e)) throw new AppRefusal(`${type} needs extra: a JSON object`);
  if (type === 'RATE_SUBMIT') {
    if (!Number.isInteger(e['score']) || (e['score'] as number) < 1 || (e['score'] as number) > 5) {
      throw new AppRefusal('RATE_SUBMIT extra.score must be an integer from 1 to 5');
    }
    if (e['resolved'] !== undefined && typeof e['resolved'] !== 'boolean') throw new AppRefusal('RATE_SUBMIT extra.resolved must be true or false');
  } else {
    if (typeof e['content'] !== 'string' || e['content'] === '') throw new AppRefusal('LEAVE_MSG_SUBMIT extra.content must be a non-empty string');
    if (e['contact'] !== undefined && typeof e['contact'] !== 'string') throw new AppRefusal('LEAVE_MSG_SUBMIT extra.contact must be a string');
    if (e['images'] !== undefined && !(Array.isArray(e['images']) && e['images'].every((i) => typeof i === 'string'))) {
      throw new AppRefusal('LEAVE_MSG_SUBMIT extra.images must be a list of URLs');
    }
  }
}

/** A stored message as clients see it: its history position as `id`, and `recalled` once recalled. */
export function viewOf(r: ThreadMessageRecord): ThreadMessageView {
  const v = { id: r.seq, ...(JSON.parse(r.body) as Omit<ThreadMessageView, 'id'>) };
  if (r.recalled) v.recalled = true;
  return v;
}
