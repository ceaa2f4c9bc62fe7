/**
 * The JSON schemas the HTTP routes share: the envelope, the error, and the
 * shapes of what the API answers (users, messages, threads, apps…). They
 * are added to the Fastify app with `addSchema` and named by `$ref`
 * (`{ $ref: 'User#' }`) from the routes' response schemas; the OpenAPI
 * document (/api/openapi.json) lists them under components/schemas.
 *
 * Request schemas (body, querystring, params) stay inline in each route:
 * they are what Fastify validates with, and they do not use `$ref`.
 *
 * Responses are sent with JSON.stringify (see createHttpApp), not by these
 * schemas, so a field missing here is never dropped from an answer; the
 * OpenAPI test checks real answers against them, so they stay true.
 */
import type { FastifyInstance } from 'fastify';
import { DELIVERY_STATUSES, ROLES } from '../store/store.js';

export type JsonSchema = Record<string, unknown>;

const str = (description?: string): JsonSchema => ({ type: 'string', ...(description ? { description } : {}) });
const int = (description?: string): JsonSchema => ({ type: 'integer', ...(description ? { description } : {}) });
const time = (description: string): JsonSchema => ({ type: 'string', format: 'date-time', description });
const epochMs = (description: string): JsonSchema => ({ type: 'integer', description: `${description} (epoch milliseconds)` });

/** An object whose listed fields are all present and nothing else is. */
function closed(properties: Record<string, JsonSchema>, optional: readonly string[] = []): JsonSchema {
  return { type: 'object', additionalProperties: false, required: Object.keys(properties).filter((k) => !optional.includes(k)), properties };
}

const ERROR: JsonSchema = {
  $id: 'Error',
  description: 'An error: the HTTP status again as `code`, and a message that says what was wrong and what to do.',
  ...closed({
    code: { type: 'integer', minimum: 400, maximum: 599, description: 'the HTTP status' },
    message: str('what was wrong, in words a person can act on'),
    data: { description: 'null, or details (sendMessage: `{"unknownReceivers": […]}`)' },
  }),
};

const USER: JsonSchema = {
  $id: 'User',
  ...closed({
    id: str('user id'),
    name: str('login name'),
    role: { type: 'string', enum: [...ROLES] },
    disabled: { type: 'boolean' },
    createdAt: epochMs('when the user was created'),
  }),
};

const MESSAGE_FIELDS = {
  id: str('message id'),
  title: str(),
  content: str('the text as sent (often JSON text)'),
  type: { type: ['integer', 'string'], description: 'as sent: a number stays a number' },
  sender: str('user id of the sender'),
  createdAt: time('when it was sent'),
};

const MESSAGE: JsonSchema = { $id: 'Message', description: 'A message of the message service.', ...closed(MESSAGE_FIELDS) };

const MESSAGE_RECORD: JsonSchema = {
  $id: 'MessageRecord',
  description: 'A stored message with the delivery status of each receiver.',
  ...closed({
    ...MESSAGE_FIELDS,
    receivers: {
      type: 'array',
      items: closed({
        receiver: str('user id'),
        receiverName: str('user name (the id again when the user is unknown)'),
        status: { type: 'string', enum: [...DELIVERY_STATUSES] },
        updatedAt: time('when the status last changed'),
      }),
    },
  }),
};

const SESSION: JsonSchema = {
  $id: 'OnlineSession',
  description: 'A session online now, on any protocol and (in a cluster) any node.',
  ...closed(
    {
      sessionId: str(),
      userId: str(),
      loginName: str(),
      device: str(),
      protocol: { type: 'string', enum: ['stomp-ws', 'stomp-tcp', 'json-ws', 'mqtt-tcp', 'mqtt-ws'] },
      remoteAddress: str(),
      loginTime: time('when the session connected'),
      status: { type: 'string', enum: ['ONLINE'] },
      node: str('the node that holds the session'),
      subscriptions: int('live figure; absent when its node did not answer in time'),
      unacked: int('messages sent and not yet acknowledged; absent when its node did not answer in time'),
    },
    ['subscriptions', 'unacked'],
  ),
};

const THREAD_FIELDS = {
  id: str('thread id'),
  topic: str('the dotted form STOMP clients subscribe to (`org.1.visitor.7`)'),
  thread: str('the canonical id (`org/1/visitor/7`)'),
  status: { type: 'string', enum: ['OPEN', 'CLOSED'] },
  createdBy: str('user id'),
  createdAt: time('when it was created'),
  lastActivityAt: time('the last message or change'),
  closedAt: { type: ['string', 'null'], format: 'date-time' },
  members: { type: 'array', items: closed({ userId: str(), role: { type: 'string', enum: ['visitor', 'agent'] } }) },
};

const THREAD: JsonSchema = { $id: 'Thread', description: 'A chat thread and its members.', ...closed(THREAD_FIELDS) };

const THREAD_MESSAGE: JsonSchema = {
  $id: 'ThreadMessage',
  description:
    'A chat message as stored and delivered: the JSON the client sent, stamped by the server. `id` is its position in the history. ' +
    'Fields the client added are kept, so the object is open.',
  type: 'object',
  additionalProperties: true,
  required: ['id', 'uid', 'type', 'content', 'status', 'createdAt'],
  properties: {
    id: str('position in the thread history (use with before/after)'),
    uid: str("the client's id of the message"),
    type: str('TEXT, IMAGE, FILE, READ, DELIVERED, TYPING, RECALL, AUTO_CLOSED, …'),
    content: str(),
    status: str(),
    createdAt: time('server time of the message'),
    channel: str(),
    extra: { description: 'type-specific details, as sent' },
    thread: { description: 'the thread, as sent (its id, or an object with its topic)' },
    user: { description: 'the sender, as sent, with `uid` set' },
    recalled: { type: 'boolean', description: 'present (true) once the message was recalled' },
  },
};

const THREAD_SUMMARY: JsonSchema = {
  $id: 'ThreadSummary',
  description: 'A thread in a list: the thread, its last message and how many messages you have not read.',
  ...closed({
    ...THREAD_FIELDS,
    lastMessage: { anyOf: [{ $ref: 'ThreadMessage#' }, { type: 'null' }] },
    unread: int('messages of others you have not marked read'),
  }),
};

const NODE: JsonSchema = {
  $id: 'Node',
  description: 'A node of the cluster (the only one without Redis).',
  ...closed({ id: str(), startedAt: epochMs('start'), connections: int('sessions it holds'), seenAt: epochMs('last heartbeat') }),
};

const byProtocol = (description: string): JsonSchema => ({ type: 'object', additionalProperties: { type: 'number' }, description: `${description}, by protocol` });

const OVERVIEW: JsonSchema = {
  $id: 'Overview',
  description: "The figures of the console's overview; counters are totals since start.",
  ...closed({
    version: str('Herald version'),
    node: str('this node'),
    cluster: { type: 'boolean' },
    uptimeSeconds: int(),
    connections: byProtocol('open connections'),
    messagesIn: byProtocol('messages received'),
    messagesOut: byProtocol('messages sent'),
    store: closed({ kind: { type: 'string', enum: ['sqlite', 'postgres'] }, calls: { type: 'number' }, seconds: { type: 'number' } }),
    nodes: { type: 'array', items: { $ref: 'Node#' } },
  }),
};

/** Every shared schema, in an order where each comes after those it names. */
export const SHARED_SCHEMAS: readonly JsonSchema[] = [ERROR, USER, MESSAGE, MESSAGE_RECORD, SESSION, THREAD, THREAD_MESSAGE, THREAD_SUMMARY, NODE, OVERVIEW];

export function addSharedSchemas(app: FastifyInstance): void {
  for (const s of SHARED_SCHEMAS) app.addSchema(s);
}

/** The success envelope `{"code":200,"message":"OK","data":…}` around `data`. */
export function okEnvelope(data: JsonSchema, description: string): JsonSchema {
  return {
    description,
    ...closed({ code: { type: 'integer', enum: [200] }, message: { type: 'string', enum: ['OK'] }, data }),
  };
}

export const ref = (id: string): JsonSchema => ({ $ref: `${id}#` });
export const arrayOf = (items: JsonSchema): JsonSchema => ({ type: 'array', items });
export const NULL: JsonSchema = { type: 'null' };

/** An error answer in the envelope, described for this route: `errorAnswer('no user with that id')`. */
export const errorAnswer = (description: string): JsonSchema => ({ $ref: 'Error#', description });

/** Error answers by status, each described for its route: `errors({ 404: 'no user with that id' })`. */
export function errors(byStatus: Record<number, string>): Record<number, JsonSchema> {
  return Object.fromEntries(Object.entries(byStatus).map(([status, description]) => [status, errorAnswer(description)]));
}

/** A closed object schema (every field required unless listed in `optional`). */
export { closed };

/**
 * The `__token` query parameter, for query schemas that refuse unknown
 * parameters: the token may come that way (see requireAuth), and Fastify
 * checks the query before the route's pre-handler reads it.
 */
export const TOKEN_QUERY: Record<string, JsonSchema> = {
  __token: { type: 'string', description: 'the token, for clients that cannot set a header (the queryToken security scheme)' },
};
