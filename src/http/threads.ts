/**
 * Chat thread API (the customer-service chat client): create threads with their members, read
 * history and receipts, list a user's threads, close, and the HTTP fallback
 * send that does exactly what a STOMP publish to /app/{thread} does.
 */
import { THREAD_TYPES, ThreadMissing, dottedThread, type ThreadService } from '../apps/threads.js';
import type { RouteContext } from './app.js';
import { AppForbidden, AppRefusal } from '../core/broker.js';
import { DuplicateError, type ThreadRecord, type ThreadRole, type ThreadStatus } from '../store/store.js';
import { HttpError, badRequest, forbidden, notFound, ok } from './envelope.js';
import { requireAuth } from './app.js';
import { jsonDepthProblem } from '../core/json-depth.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, ref, type JsonSchema } from './schemas.js';

const MEMBER = {
  type: 'object',
  required: ['user', 'role'],
  additionalProperties: false,
  properties: { user: { type: 'string', minLength: 1, maxLength: 128 }, role: { type: 'string', enum: ['visitor', 'agent'] } },
};

const THREAD_PARAM: JsonSchema = {
  type: 'object',
  required: ['thread'],
  properties: { thread: { type: 'string', description: 'the thread: its dotted form (org.1.visitor.7) or its id with / URL-encoded' } },
};
/** What a member-only route answers when the thread is missing or not yours. */
const NOT_YOURS = errors({ 403: 'you are not a member of the thread (admins and services may read any), or the user is disabled', 404: 'no such thread' });

/** The chat message as a client sends it (checked by the thread service, not by Fastify). */
const MESSAGE_IN: JsonSchema = {
  type: 'object',
  required: ['uid', 'type', 'thread'],
  additionalProperties: true,
  properties: {
    uid: { type: 'string', minLength: 1, maxLength: 128, description: "the client's id of the message (a message sent again with the same uid is stored once)" },
    type: { type: 'string', enum: [...THREAD_TYPES], description: 'READ and DELIVERED (content: the uid they acknowledge) record receipts; TYPING and PROCESSING are not stored' },
    content: { type: 'string', description: 'at most threadMaxContentBytes' },
    thread: { description: 'the thread: its id, or an object with its topic' },
    channel: { type: 'string' },
    extra: { description: 'type-specific: RATE_SUBMIT {score 1–5, resolved?}, LEAVE_MSG_SUBMIT {content, contact?, images?}, as an object or its JSON text' },
    user: { type: 'object', description: 'the sender; uid, if given, must be you' },
  },
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
        tags: ['threads'],
        operationId: 'createThread',
        summary: 'Create a thread with its members',
        description: 'Members are given by user id or name; ids Herald does not know (JWT subjects) are kept as given.',
        body: {
          type: 'object',
          required: ['thread'],
          additionalProperties: false,
          properties: {
            thread: { type: 'string', minLength: 1, maxLength: 256, pattern: '^[^#+*\\u0000]+$' },
            members: { type: 'array', maxItems: 1000, items: MEMBER },
          },
        },
        response: { 200: okEnvelope(ref('Thread'), 'the new thread'), ...errors({ 409: 'the thread exists' }) },
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
        tags: ['threads'],
        operationId: 'listThreads',
        summary: 'Your threads, newest activity first',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            status: { type: 'string', enum: ['OPEN', 'CLOSED'] },
            all: { type: 'boolean', description: 'every thread, not only yours (admin and service)' },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
          },
        },
        response: {
          200: okEnvelope(arrayOf(ref('ThreadSummary')), 'the threads'),
          ...errors({ 403: 'all=true needs the admin or service role; or the user is disabled' }),
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

  http.get<{ Params: { thread: string } }>(
    '/api/v1/thread/:thread',
    {
      preHandler: anyone,
      schema: {
        tags: ['threads'],
        operationId: 'getThread',
        summary: 'A thread and its members',
        params: THREAD_PARAM,
        response: { 200: okEnvelope(ref('Thread'), 'the thread'), ...NOT_YOURS },
      },
    },
    async (req) => ok(threadView(await mapped(() => threads.getFor(req.principal!, req.params.thread)))),
  );

  http.post<{ Params: { thread: string }; Body: { user: string; role: ThreadRole } }>(
    '/api/v1/thread/:thread/members',
    {
      preHandler: managers,
      schema: {
        tags: ['threads'],
        operationId: 'addThreadMember',
        summary: 'Add a member, or change its role (an agent taking a transfer)',
        params: THREAD_PARAM,
        body: MEMBER,
        response: { 200: okEnvelope(ref('Thread'), 'the thread with its members now'), ...errors({ 404: 'no such thread' }) },
      },
    },
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
        tags: ['threads'],
        operationId: 'threadHistory',
        summary: 'A thread\'s messages, oldest first',
        description: 'Without after: the newest `limit` messages (before `before` if given). With after: those after it.',
        params: THREAD_PARAM,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            before: { type: 'string', pattern: '^\\d{1,15}$', description: 'a message id: those before it' },
            after: { type: 'string', pattern: '^\\d{1,15}$', description: 'a message id: those after it' },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          },
        },
        response: { 200: okEnvelope(arrayOf(ref('ThreadMessage')), 'the messages'), ...NOT_YOURS },
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

  http.get<{ Params: { thread: string; uid: string } }>(
    '/api/v1/thread/:thread/messages/:uid/receipts',
    {
      preHandler: anyone,
      schema: {
        tags: ['threads'],
        operationId: 'threadReceipts',
        summary: 'Who has received and read a message',
        params: {
          type: 'object',
          required: ['thread', 'uid'],
          properties: { ...(THREAD_PARAM['properties'] as object), uid: { type: 'string', description: "the message's uid (the client's id)" } },
        },
        response: {
          200: okEnvelope(
            arrayOf(closed({ userId: { type: 'string' }, status: { type: 'string', enum: ['DELIVERED', 'READ'] }, updatedAt: { type: 'string', format: 'date-time' } })),
            'one entry per member who received it',
          ),
          ...NOT_YOURS,
        },
      },
    },
    async (req) => ok(await mapped(() => threads.receipts(req.principal!, req.params.thread, req.params.uid))),
  );

  http.post<{ Params: { thread: string }; Body: { reason?: string } | undefined }>(
    '/api/v1/thread/:thread/close',
    {
      preHandler: anyone,
      schema: {
        tags: ['threads'],
        operationId: 'closeThread',
        summary: 'Close a thread (members are sent AUTO_CLOSED)',
        description: 'Later messages to it are refused. Closing a closed thread answers it as it is.',
        params: THREAD_PARAM,
        'x-request-body': {
          required: false,
          content: { 'application/json': { schema: { type: 'object', properties: { reason: { type: 'string', description: 'shown to the members (200 characters at most are kept)' } } } } },
        },
        response: {
          200: okEnvelope(ref('Thread'), 'the thread, closed'),
          ...errors({ 403: 'only an agent of the thread, an admin or a service may close it; or the user is disabled', 404: 'no such thread' }),
        },
      },
    },
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
      schema: {
        tags: ['threads'],
        operationId: 'sendThreadMessage',
        summary: 'Send a chat message over HTTP (the fallback when the socket is down)',
        description:
          'The same JSON, checks and effect as a STOMP SEND to /app/{thread}. A refusal of the message (not a member, no such thread, closed, bad content, a body that is not the message) ' +
          'is answered HTTP 200 with the refusal in the envelope (`{"code":403,"message":"you are not a member…","data":null}`): the chat client treats any other status as a network failure. ' +
          'Authentication failures (401, 403 for a disabled user, 429) and server trouble (5xx) keep their status.',
        'x-herald-refusals-as-200': true,
        'x-request-body': {
          required: true,
          content: {
            'application/json': { schema: { ...MESSAGE_IN } },
            'text/plain': { schema: { type: 'string', description: 'the same message as JSON text' } },
          },
        },
        response: {
          200: {
            description: 'sent (code 200, data: the stored message), or refused (code 400, 403, 404 or 413 in the envelope, data: null)',
            ...closed({
              code: { type: 'integer', description: '200, or the status of the refusal' },
              message: { type: 'string' },
              data: { anyOf: [ref('ThreadMessage'), { type: 'null' }] },
            }),
          },
        },
      },
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
