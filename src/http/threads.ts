/**
 * Chat thread API (the customer-service chat client): create threads with their members, read
 * history and receipts, list a user's threads, close, and the HTTP fallback
 * send that does exactly what a STOMP publish to /app/{thread} does.
 */
import { ThreadMissing, dottedThread, type ThreadService } from '../apps/threads.js';
import type { RouteContext } from './app.js';
import { AppForbidden, AppRefusal } from '../core/broker.js';
import { DuplicateError, type ThreadRecord, type ThreadRole, type ThreadStatus } from '../store/store.js';
import { HttpError, badRequest, forbidden, notFound, ok } from './envelope.js';
import { requireAuth } from './app.js';
import { jsonDepthProblem } from '../core/json-depth.js';

const MEMBER = {
  type: 'object',
  required: ['user', 'role'],
  additionalProperties: false,
  properties: { user: { type: 'string', minLength: 1, maxLength: 128 }, role: { type: 'string', enum: ['visitor', 'agent'] } },
};

export function threadView(t: ThreadRecord) {
  return {
    id: t.id,
    topic: dottedThread(t.topic),
    thread: t.topic,
    status: t.status,
    createdBy: t.createdBy,
    createdAt: new Date(t.createdAt).toISOString(),
    lastActivityAt: new Date(t.lastActivityAt).toISOString(),
    closedAt: t.closedAt === null ? null : new Date(t.closedAt).toISOString(),
    members: t.members,
  };
}

/** Maps the thread service's refusals onto HTTP statuses. */
async function mapped<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ThreadMissing) throw notFound(err.message);
    if (err instanceof AppForbidden) throw forbidden(err.message);
    if (err instanceof AppRefusal) throw badRequest(err.message);
    throw err;
  }
}

export function registerThreadRoutes(ctx: RouteContext, threads: ThreadService): void {
  const { http, store } = ctx;
  const anyone = requireAuth(ctx);
  const managers = requireAuth(ctx, ['admin', 'service']);

  /** A member given by id or name; ids of users Herald does not know (JWT subjects) are kept as given. */
  const resolve = async (user: string): Promise<string> => ((await store.getUserById(user)) ?? (await store.getUserByName(user)))?.id ?? user;

  http.post<{ Body: { thread: string; members?: { user: string; role: ThreadRole }[] } }>(
    '/api/v1/thread',
    {
      preHandler: managers,
      schema: {
        body: {
          type: 'object',
          required: ['thread'],
          additionalProperties: false,
          properties: {
            thread: { type: 'string', minLength: 1, maxLength: 256, pattern: '^[^#+*\\u0000]+$' },
            members: { type: 'array', maxItems: 1000, items: MEMBER },
          },
        },
      },
    },
    async (req) => {
      const members = await Promise.all((req.body.members ?? []).map(async (m) => ({ userId: await resolve(m.user), role: m.role })));
      try {
        return ok(threadView(await threads.create(req.principal!, req.body.thread, members)));
      } catch (err) {
        if (err instanceof DuplicateError) throw new HttpError(409, err.message);
        throw err;
      }
    },
  );

  http.get<{ Querystring: { status?: ThreadStatus; all?: boolean; limit?: number } }>(
    '/api/v1/threads',
    {
      preHandler: anyone,
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: ['OPEN', 'CLOSED'] },
            all: { type: 'boolean' },
            limit: { type: 'integer', minimum: 1, maximum: 500 },
          },
        },
      },
    },
    async (req) => {
      const p = req.principal!;
      if (req.query.all && p.role === 'user') throw forbidden('all=true needs the admin or service role');
      const list = await store.listThreads({
        ...(req.query.all ? {} : { member: p.userId }),
        ...(req.query.status ? { status: req.query.status } : {}),
        limit: req.query.limit ?? 100,
      });
      // With all=true (the console), members by name as well as id; each user read once per answer.
      const names = new Map<string, Promise<string | undefined>>();
      const nameOf = (id: string): Promise<string | undefined> => {
        let n = names.get(id);
        if (!n) names.set(id, (n = store.getUserById(id).then((u) => u?.name)));
        return n;
      };
      const members = req.query.all
        ? await Promise.all(list.map((x) => Promise.all(x.thread.members.map(async (m) => ({ ...m, name: (await nameOf(m.userId)) ?? m.userId })))))
        : list.map((x) => x.thread.members);
      return ok(
        list.map((x, i) => ({
          ...threadView(x.thread),
          members: members[i]!,
          lastMessage: x.lastMessage ? { id: x.lastMessage.seq, ...(JSON.parse(x.lastMessage.body) as object), ...(x.lastMessage.recalled ? { recalled: true } : {}) } : null,
          unread: x.unread,
        })),
      );
    },
  );

  http.get<{ Params: { thread: string } }>('/api/v1/thread/:thread', { preHandler: anyone }, async (req) =>
    ok(threadView(await mapped(() => threads.getFor(req.principal!, req.params.thread)))),
  );

  http.post<{ Params: { thread: string }; Body: { user: string; role: ThreadRole } }>(
    '/api/v1/thread/:thread/members',
    { preHandler: managers, schema: { body: MEMBER } },
    async (req) => {
      const userId = await resolve(req.body.user);
      return ok(threadView(await mapped(() => threads.addMember(req.principal!, req.params.thread, { userId, role: req.body.role }))));
    },
  );

  http.get<{ Params: { thread: string }; Querystring: { before?: string; after?: string; limit?: number } }>(
    '/api/v1/thread/:thread/messages',
    {
      preHandler: anyone,
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            before: { type: 'string', pattern: '^\\d{1,15}$' },
            after: { type: 'string', pattern: '^\\d{1,15}$' },
            limit: { type: 'integer', minimum: 1, maximum: 500 },
          },
        },
      },
    },
    async (req) => {
      const { before, after, limit } = req.query;
      return ok(
        await mapped(() =>
          threads.history(req.principal!, req.params.thread, {
            ...(before !== undefined ? { before } : {}),
            ...(after !== undefined ? { after } : {}),
            limit: limit ?? 50,
          }),
        ),
      );
    },
  );

  http.get<{ Params: { thread: string; uid: string } }>('/api/v1/thread/:thread/messages/:uid/receipts', { preHandler: anyone }, async (req) =>
    ok(await mapped(() => threads.receipts(req.principal!, req.params.thread, req.params.uid))),
  );

  http.post<{ Params: { thread: string }; Body: { reason?: string } | undefined }>(
    '/api/v1/thread/:thread/close',
    { preHandler: anyone },
    async (req) => {
      const reason = typeof req.body === 'object' && req.body && typeof req.body.reason === 'string' ? req.body.reason.slice(0, 200) : 'closed by ' + req.principal!.name;
      const closed = threadView(await mapped(() => threads.close(req.principal!, req.params.thread, reason)));
      // Closing a thread one is not in (the console) is an admin action; a member closing their own chat is not.
      if (req.principal!.role !== 'user') await ctx.audit.record(req, 'thread.close', `thread ${closed.thread}`, { reason });
      return ok(closed);
    },
  );

  /**
   * The customer-service chat client's sendHttpMessage: the same JSON as the STOMP publish, the same effect.
   *
   * That client reads `code` and `message` from the answer and treats any
   * non-2xx status as a network failure ("消息发送失败", whatever the reason).
   * So a message this endpoint refuses (not a member, no such thread, closed,
   * bad content, a body that is not the message JSON) is answered with HTTP
   * 200 and the refusal in the envelope: `{"code":403,"message":"you are not a
   * member…"}`, shown to the user as the server wrote it. Failures that are not
   * about the message keep their HTTP status: authentication (401, and 403/429
   * for a disabled or rate-limited login), which HTTP layers act on by logging
   * in again, and server trouble (5xx), after which the message may be sent again.
   */
  http.post<{ Body: unknown }>(
    '/api/v1/message/send',
    {
      preHandler: anyone,
      onSend: async (req, reply, payload) => {
        const status = reply.statusCode;
        const authFailed = req.principal === null && (status === 401 || status === 403 || status === 429);
        if (status >= 400 && status < 500 && !authFailed) void reply.code(200);
        return payload;
      },
    },
    async (req) => {
      const body = req.body;
      if (typeof body !== 'string' && (body === null || typeof body !== 'object' || Array.isArray(body))) {
        throw badRequest('body must be the chat message JSON object (or its JSON text)');
      }
      if (typeof body === 'string') {
        const tooDeep = jsonDepthProblem(body);
        if (tooDeep) throw badRequest(`message is not accepted: ${tooDeep}`);
      }
      return ok(await mapped(() => threads.publish(req.principal!, body as string | Record<string, unknown>, { sessionId: 'http:' + req.principal!.userId })));
    },
  );
}
