/**
 * Retained MQTT messages for the console: browse them by topic filter, view
 * one (payload as text and bytes, QoS, properties), delete one. Every node
 * holds them all in memory (set on one node, applied on the others; kept in
 * the store for restarts), so this node's copy is the cluster's.
 */
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { HttpError, badRequest, notFound, ok } from './envelope.js';
import { filterProblem, topicProblem } from '../core/destination.js';
import type { CoreMessage } from '../core/message.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, type JsonSchema } from './schemas.js';

/** What the routes need of the retained messages (protocols/mqtt/retained.ts). */
export interface RetainedBrowser {
  browse(filter: string): Iterable<{ topic: string; msg: CoreMessage; qos: number; volatile: boolean }>;
  get(topic: string): { topic: string; msg: CoreMessage; qos: number; volatile: boolean } | undefined;
  clear(topic: string): Promise<void>;
}

/** Bytes of a payload shown in a list (the whole payload comes with one message). */
const PREVIEW_BYTES = 256;
const MAX_PAYLOAD_SHOWN = 1024 * 1024;

const SUMMARY_FIELDS: Record<string, JsonSchema> = {
  topic: { type: 'string' },
  qos: { type: 'integer', enum: [0, 1, 2] },
  bytes: { type: 'integer', description: 'payload size' },
  text: { type: ['string', 'null'], description: 'the payload (its first 256 bytes in a list) as UTF-8 text, or null when it is not text' },
  hex: { type: 'string', description: 'the payload (its first 256 bytes in a list) in hex' },
  contentType: { type: ['string', 'null'] },
  payloadFormat: { type: ['integer', 'null'], description: 'MQTT 5: 1 declares UTF-8 text' },
  userProperties: arrayOf(arrayOf({ type: 'string' })),
  responseTopic: { type: ['string', 'null'] },
  correlationData: { type: ['string', 'null'], description: 'hex' },
  expiresAt: { type: ['string', 'null'], format: 'date-time', description: 'message expiry, when set' },
  setAt: { type: 'string', format: 'date-time', description: 'when it was retained (or, after a restart, stored)' },
  volatile: { type: 'boolean', description: 'true: kept in memory only ($SYS statistics, written by the server)' },
};
const RETAINED = closed(SUMMARY_FIELDS);

function view(e: { topic: string; msg: CoreMessage; qos: number; volatile: boolean }, limit: number) {
  const m = e.msg;
  const shown = m.body.subarray(0, limit);
  return {
    topic: e.topic,
    qos: e.qos,
    bytes: m.body.length,
    text: m.textBody ? shown.toString('utf8') : null,
    hex: shown.toString('hex'),
    contentType: m.contentType ?? null,
    payloadFormat: m.payloadFormat ?? null,
    userProperties: m.headers,
    responseTopic: m.replyTo ?? null,
    correlationData: m.correlation?.toString('hex') ?? null,
    expiresAt: m.expiresAt !== undefined ? new Date(m.expiresAt).toISOString() : null,
    setAt: new Date(m.timestamp).toISOString(),
    volatile: e.volatile,
  };
}

export function registerRetainedRoutes(ctx: RouteContext, retained: RetainedBrowser): void {
  const { http, audit } = ctx;
  const managers = requireAuth(ctx, ['admin', 'service']);
  const admins = requireAuth(ctx, ['admin']);
  const topicQuery = (required: boolean) => ({
    type: 'object',
    additionalProperties: false,
    ...(required ? { required: ['topic'] } : {}),
    properties: { ...TOKEN_QUERY, topic: { type: 'string', minLength: 1, maxLength: 65535, description: 'the topic, MQTT form (a/b/c)' } },
  });
  const checkTopic = (topic: string): void => {
    const problem = topicProblem(topic);
    if (problem) throw badRequest(`topic "${topic.slice(0, 100)}": ${problem}`);
  };

  http.get<{ Querystring: { filter?: string; limit?: number } }>(
    '/api/admin/retained',
    {
      preHandler: managers,
      schema: {
        tags: ['admin'],
        operationId: 'retainedMessages',
        summary: 'Retained MQTT messages whose topic a filter matches, by topic',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            filter: { type: 'string', minLength: 1, maxLength: 65535, description: 'an MQTT topic filter (default #; $SYS/# for the server\'s statistics)' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, description: 'most messages (default 200)' },
          },
        },
        response: {
          200: okEnvelope(closed({ filter: { type: 'string' }, messages: arrayOf(RETAINED), more: { type: 'boolean', description: 'more matched than the limit' } }), 'the retained messages'),
          ...errors({ 400: 'not a valid topic filter' }),
        },
      },
    },
    async (req) => {
      const { filter = '#', limit = 200 } = req.query;
      const problem = filterProblem(filter);
      if (problem) throw badRequest(`filter "${filter.slice(0, 100)}": ${problem}`);
      const found: ReturnType<typeof view>[] = [];
      let more = false;
      for (const e of retained.browse(filter)) {
        if (found.length === limit) {
          more = true;
          break;
        }
        found.push(view(e, PREVIEW_BYTES));
      }
      found.sort((a, b) => a.topic.localeCompare(b.topic));
      return ok({ filter, messages: found, more });
    },
  );

  http.get<{ Querystring: { topic: string } }>(
    '/api/admin/retained/message',
    {
      preHandler: managers,
      schema: {
        tags: ['admin'],
        operationId: 'retainedMessage',
        summary: 'One retained message with its whole payload (up to 1 MiB) and properties',
        querystring: topicQuery(true),
        response: { 200: okEnvelope(RETAINED, 'the message'), ...errors({ 400: 'not a valid topic', 404: 'nothing is retained on that topic' }) },
      },
    },
    async (req) => {
      checkTopic(req.query.topic);
      const e = retained.get(req.query.topic);
      if (!e) throw notFound(`nothing is retained on ${req.query.topic}`);
      return ok(view(e, MAX_PAYLOAD_SHOWN));
    },
  );

  http.delete<{ Querystring: { topic: string } }>(
    '/api/admin/retained/message',
    {
      preHandler: admins,
      schema: {
        tags: ['admin'],
        operationId: 'deleteRetainedMessage',
        summary: 'Delete the retained message of a topic, on every node and in the store',
        description: 'As an empty retained publish would: new subscribers no longer get it. Current subscribers are not told.',
        querystring: topicQuery(true),
        response: {
          200: okEnvelope(closed({ topic: { type: 'string' } }), 'deleted'),
          ...errors({ 400: 'not a valid topic', 404: 'nothing is retained on that topic', 409: 'a $SYS statistic: the server writes it again' }),
        },
      },
    },
    async (req) => {
      const topic = req.query.topic;
      checkTopic(topic);
      const e = retained.get(topic);
      if (!e) throw notFound(`nothing is retained on ${topic}`);
      if (e.volatile) throw new HttpError(409, `${topic} is a statistic the server writes every sysIntervalSeconds; it cannot be deleted`);
      await retained.clear(topic);
      await audit.record(req, 'retained.delete', topic, { bytes: e.msg.body.length });
      return ok({ topic });
    },
  );
}
