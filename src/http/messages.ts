/**
 * The message service's HTTP API: send, page through records,
 * delete, list online clients, collect pending messages, mark read.
 */
import { MessageService, UnknownReceiversError, messageView } from '../apps/message-service.js';
import type { FastifyRequest } from 'fastify';
import type { RouteContext } from './app.js';
import { DELIVERY_STATUSES, type DeliveryStatus } from '../store/store.js';
import { HttpError, badRequest, forbidden, notFound, ok } from './envelope.js';
import { requireAuth } from './app.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, ref } from './schemas.js';

interface SendBody {
  content: string;
  receiver?: (string | number)[];
  title?: string;
  type?: string | number;
}

interface PageQuery {
  page?: number;
  size?: number;
  status?: DeliveryStatus;
  sender?: string;
  receiver?: string;
  type?: string;
  from?: string;
  to?: string;
}

const MAX_PAGE_SIZE = 100;
const ID = { anyOf: [{ type: 'string', minLength: 1, maxLength: 32 }, { type: 'integer', minimum: 1 }], description: 'message id (a number is taken as its text)' };
const DELETED = okEnvelope(closed({ id: { type: 'string' }, deleted: { type: 'boolean', enum: [true] } }), 'deleted');

/** Epoch milliseconds or an ISO 8601 date. */
function parseTime(value: string, name: string): number {
  const t = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(t)) throw badRequest(`${name} must be epoch milliseconds or an ISO 8601 date, not "${value}"`);
  return t;
}

export function registerMessageRoutes(ctx: RouteContext, service: MessageService): void {
  const { http, store, config } = ctx;
  const anyone = requireAuth(ctx);
  const managers = requireAuth(ctx, ['admin', 'service']);

  http.post<{ Body: SendBody }>(
    '/api/message/sendMessage',
    {
      preHandler: anyone,
      schema: {
        tags: ['message service'],
        operationId: 'sendMessage',
        summary: 'Send a message to listed users, or to everyone online',
        description:
          'Stored with one delivery row per receiver (PENDING, then DELIVERED when a session acknowledges it, then READ), and pushed to every session of each receiver on every protocol. ' +
          'Receivers are user ids or names; unknown ones are listed in unknownReceivers and the others still get it. Without receiver: everyone online now. ' +
          'The user role may send only to listed receivers, and only when userSendToOthers is on.',
        body: {
          type: 'object',
          required: ['content'],
          additionalProperties: false,
          properties: {
            content: { type: 'string' },
            receiver: { type: 'array', maxItems: 10_000, items: ID },
            title: { type: 'string', maxLength: 512 },
            type: { anyOf: [{ type: 'integer' }, { type: 'string', maxLength: 64 }] },
          },
        },
        response: {
          200: okEnvelope(
            closed({
              id: { type: 'string', description: 'message id' },
              receivers: arrayOf({ type: 'string', description: 'user id' }),
              unknownReceivers: arrayOf({ type: 'string', description: 'as given' }),
              delivered: { type: 'integer', description: 'sessions it was pushed to now' },
            }),
            'stored and sent',
          ),
          ...errors({
            400: 'content is empty, receiver is an empty list, none of the receivers exist (data.unknownReceivers lists them), or the body is not what this route takes',
            403: 'the user role may not send (to everyone, or at all without userSendToOthers), or the user is disabled',
            413: 'content is over messageMaxContentBytes (or the request over httpBodyLimit)',
          }),
        },
      },
    },
    async (req) => {
      const p = req.principal!;
      const { content } = req.body;
      if (content.length === 0) throw badRequest('content is empty; send the message text (or JSON text) in content');
      const bytes = Buffer.byteLength(content);
      if (bytes > config.messageMaxContentBytes) {
        throw new HttpError(413, `content is ${bytes} bytes; the limit is ${config.messageMaxContentBytes} (messageMaxContentBytes)`);
      }
      const broadcast = req.body.receiver === undefined;
      if (p.role === 'user' && (broadcast || !config.userSendToOthers)) {
        throw forbidden(broadcast ? 'sending to everyone online needs the admin or service role' : 'sending messages needs the admin or service role');
      }
      if (!broadcast && req.body.receiver!.length === 0) throw badRequest('receiver is an empty list; leave it out to send to everyone online');
      try {
        const r = await service.send(p, {
          title: req.body.title ?? '',
          content,
          type: String(req.body.type ?? 0),
          receivers: req.body.receiver?.map(String),
        });
        // An administrator's send (the console's form) is an admin action; services send as their daily work.
        if (p.role === 'admin') {
          await ctx.audit.record(req, 'message.send', `message ${r.id}`, { title: req.body.title ?? '', receivers: broadcast ? 'everyone online' : r.receivers.length });
        }
        return ok(r);
      } catch (err) {
        if (err instanceof UnknownReceiversError) throw new HttpError(400, err.message, {}, { unknownReceivers: err.unknown });
        throw err;
      }
    },
  );

  http.get<{ Querystring: PageQuery }>(
    '/api/message/getMessagePage',
    {
      preHandler: managers,
      schema: {
        tags: ['message service'],
        operationId: 'getMessagePage',
        summary: 'Page through stored messages, newest first',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            page: { type: 'integer', minimum: 1, maximum: 1_000_000 },
            size: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE },
            status: { type: 'string', enum: [...DELIVERY_STATUSES] },
            sender: { type: 'string', maxLength: 128 },
            receiver: { type: 'string', maxLength: 128 },
            type: { type: 'string', maxLength: 64 },
            from: { type: 'string', maxLength: 40, description: 'sent at or after: epoch milliseconds or ISO 8601' },
            to: { type: 'string', maxLength: 40, description: 'sent at or before: epoch milliseconds or ISO 8601' },
          },
        },
        response: {
          200: okEnvelope(
            closed({
              records: arrayOf(ref('MessageRecord')),
              total: { type: 'integer', description: 'records that match' },
              current: { type: 'integer', description: 'this page' },
              size: { type: 'integer', description: 'page size' },
              pages: { type: 'integer' },
            }),
            'one page',
          ),
          ...errors({ 400: 'a parameter is not valid (from and to: epoch milliseconds or ISO 8601; size at most 100)' }),
        },
      },
    },
    async (req) => {
      const q = req.query;
      const page = q.page ?? 1;
      const size = q.size ?? 10;
      let receiver = q.receiver;
      if (receiver !== undefined) receiver = ((await store.getUserByName(receiver)) ?? (await store.getUserById(receiver)))?.id ?? receiver;
      const result = await store.queryMessages({
        page,
        size,
        ...(q.status !== undefined ? { status: q.status } : {}),
        ...(q.sender !== undefined ? { sender: q.sender } : {}),
        ...(receiver !== undefined ? { receiver } : {}),
        ...(q.type !== undefined ? { type: q.type } : {}),
        ...(q.from !== undefined ? { from: parseTime(q.from, 'from') } : {}),
        ...(q.to !== undefined ? { to: parseTime(q.to, 'to') } : {}),
      });
      const names = new Map<string, string>();
      for (const m of result.items) {
        for (const r of m.receivers) {
          if (!names.has(r.receiver)) names.set(r.receiver, (await store.getUserById(r.receiver))?.name ?? r.receiver);
        }
      }
      return ok({
        records: result.items.map((m) => ({
          ...messageView(m),
          receivers: m.receivers.map((r) => ({
            receiver: r.receiver,
            receiverName: names.get(r.receiver),
            status: r.status,
            updatedAt: new Date(r.updatedAt).toISOString(),
          })),
        })),
        total: result.total,
        current: page,
        size,
        pages: Math.ceil(result.total / size),
      });
    },
  );

  const deleteById = async (req: FastifyRequest, id: string): Promise<ReturnType<typeof ok>> => {
    if (!(await store.deleteMessage(id))) throw notFound(`no message with id ${id}`);
    await ctx.audit.record(req, 'message.delete', `message ${id}`);
    return ok({ id, deleted: true });
  };
  http.delete<{ Querystring: { id: string } }>(
    '/api/message/deleteMessageById',
    {
      preHandler: managers,
      schema: {
        tags: ['message service'],
        operationId: 'deleteMessage',
        summary: 'Delete a message (it is no longer re-sent)',
        querystring: { type: 'object', required: ['id'], additionalProperties: false, properties: { ...TOKEN_QUERY, id: { type: 'string', minLength: 1, maxLength: 32 } } },
        response: { 200: DELETED, ...errors({ 404: 'no message with this id' }) },
      },
    },
    async (req) => deleteById(req, req.query.id),
  );
  http.post<{ Body: { id: string | number } }>(
    '/api/message/deleteMessageById',
    {
      preHandler: managers,
      schema: {
        tags: ['message service'],
        operationId: 'deleteMessageByPost',
        summary: 'Delete a message, the id in the body',
        body: { type: 'object', required: ['id'], additionalProperties: false, properties: { id: ID } },
        response: { 200: DELETED, ...errors({ 404: 'no message with this id' }) },
      },
    },
    async (req) => deleteById(req, String(req.body.id)),
  );

  http.get(
    '/api/message/getWebSocketClients',
    {
      preHandler: managers,
      schema: {
        tags: ['message service'],
        operationId: 'getWebSocketClients',
        summary: 'Sessions online now, on every protocol and node',
        description: 'In a cluster, other nodes are asked for subscriptions and unacked over the bus; a node that does not answer within 500 ms has its sessions listed without them.',
        response: { 200: okEnvelope(arrayOf(ref('OnlineSession')), 'the sessions') },
      },
    },
    async () =>
      ok(
        (await ctx.presence.sessions({ stats: true })).map((s) => ({
          sessionId: s.sessionId,
          userId: s.userId,
          loginName: s.name,
          device: s.device,
          protocol: s.protocol,
          remoteAddress: s.remoteAddress,
          loginTime: new Date(s.connectedAt).toISOString(),
          status: 'ONLINE',
          node: s.node,
          ...(s.subscriptions !== undefined ? { subscriptions: s.subscriptions, unacked: s.unacked } : {}),
        })),
      ),
  );

  // Old clients POST with no body at all, so the body is optional and checked here.
  http.post<{ Body: unknown }>(
    '/api/message/collectMessage',
    {
      preHandler: anyone,
      schema: {
        tags: ['message service'],
        operationId: 'collectMessage',
        summary: 'Collect your undelivered messages (they become DELIVERED)',
        description: 'For clients that cannot keep a socket open: your PENDING messages, oldest first, now marked DELIVERED. The body is optional.',
        'x-request-body': {
          required: false,
          content: {
            'application/json': {
              schema: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } },
            },
          },
        },
        response: { 200: okEnvelope(arrayOf(ref('Message')), 'the messages, now DELIVERED') },
      },
    },
    async (req) => {
      let limit = 100;
      if (req.body !== undefined && req.body !== null) {
        const b = req.body as Record<string, unknown>;
        if (typeof b !== 'object' || Array.isArray(b)) throw badRequest('body must be a JSON object such as {"limit": 100}, or empty');
        const unknown = Object.keys(b).find((k) => k !== 'limit');
        if (unknown !== undefined) throw badRequest(`body has unknown field "${unknown}"`);
        if (b['limit'] !== undefined) {
          if (!Number.isInteger(b['limit']) || (b['limit'] as number) < 1 || (b['limit'] as number) > 1000) {
            throw badRequest('body/limit must be an integer from 1 to 1000');
          }
          limit = b['limit'] as number;
        }
      }
      return ok(await service.collect(req.principal!.userId, limit));
    },
  );

  http.post<{ Body: { id: string | number } }>(
    '/api/message/markRead',
    {
      preHandler: anyone,
      schema: {
        tags: ['message service'],
        operationId: 'markRead',
        summary: 'Mark a message to you as READ',
        body: { type: 'object', required: ['id'], additionalProperties: false, properties: { id: ID } },
        response: {
          200: okEnvelope(closed({ id: { type: 'string' }, status: { type: 'string', enum: ['READ'] } }), 'marked'),
          ...errors({ 404: 'no message with this id for you' }),
        },
      },
    },
    async (req) => {
      const id = String(req.body.id);
      const m = await store.getMessage(id);
      const mine = m?.receivers.find((r) => r.receiver === req.principal!.userId);
      if (!m || !mine) throw notFound(`no message with id ${id} for you`);
      await service.setStatus(id, req.principal!.userId, 'READ');
      return ok({ id, status: 'READ' });
    },
  );
}
