/**
 * Live subscriptions and sessions for the console, across the cluster: the
 * subscriptions of every session grouped by what they are to (a topic
 * filter, a shared group, a queue, a mailbox), one session in detail, and
 * ending every session of a user. Each node answers for its own sessions
 * (core/cluster-survey.ts); a node that does not answer in time is named.
 */
import type { RouteContext } from './app.js';
import { requireAuth } from './app.js';
import { HttpError, ok } from './envelope.js';
import { ClusterQuestions } from '../core/cluster-survey.js';
import { PROTOCOLS } from '../core/protocol-names.js';
import type { SessionDetail, SubscriptionInfo } from '../core/session.js';
import { topicToDotted } from '../core/destination.js';
import { TOKEN_QUERY, arrayOf, closed, errors, okEnvelope, type JsonSchema } from './schemas.js';

/** One subscription of one session, as a node reports it. */
interface SubscriptionRow extends SubscriptionInfo {
  sessionId: string;
  user: string;
  protocol: string;
}

const KINDS = ['topic', 'shared', 'queue', 'user'] as const;
const MISSING: JsonSchema = arrayOf({ type: 'string', description: 'a node that did not answer in time: its figures are not here' });
const SUB_FIELDS: Record<string, JsonSchema> = {
  destination: { type: 'string', description: 'as the client wrote it' },
  kind: { type: 'string', enum: [...KINDS] },
  key: { type: 'string', description: 'the topic filter (MQTT form), queue or mailbox name' },
  group: { type: 'string', description: 'a shared subscription\'s group' },
  qos: { type: 'integer', enum: [0, 1, 2], description: 'MQTT: the QoS granted' },
  ack: { type: 'string', description: 'STOMP ack mode; client for the JSON WebSocket mailbox; auto' },
  unacked: { type: 'integer' },
  held: { type: 'integer' },
};
const OPTIONAL_SUB = ['group', 'qos', 'ack', 'unacked', 'held'];
const SUBSCRIBER = closed({ ...SUB_FIELDS, sessionId: { type: 'string' }, user: { type: 'string' }, protocol: { type: 'string', enum: [...PROTOCOLS] }, node: { type: 'string' } }, OPTIONAL_SUB);
const GROUP = closed({
  kind: { type: 'string', enum: [...KINDS] },
  key: { type: 'string' },
  group: { type: 'string' },
  stomp: { type: 'string', description: 'the same in STOMP\'s words (/topic/a.*), for topics' },
  subscribers: { type: 'integer', description: 'subscriptions to it, on every node that answered' },
  protocols: { type: 'object', additionalProperties: { type: 'integer' }, description: 'subscriptions by protocol' },
  qos: arrayOf({ type: 'integer' }),
  ack: arrayOf({ type: 'string' }),
  nodes: arrayOf({ type: 'string' }),
  sessions: { ...arrayOf(SUBSCRIBER), description: 'at most 50 of them' },
}, ['group', 'stomp']);
const DETAIL = closed({
  sessionId: { type: 'string' },
  node: { type: 'string' },
  protocol: { type: 'string', enum: [...PROTOCOLS] },
  userId: { type: 'string' },
  user: { type: 'string' },
  role: { type: 'string' },
  device: { type: 'string' },
  remoteAddress: { type: 'string' },
  connectedAt: { type: 'string', format: 'date-time' },
  credential: { type: 'string', description: 'how it logged in: token, jwt, password, certificate, expiring (an app user token or the connect hook), anonymous' },
  tls: { type: 'boolean' },
  version: { type: 'string', description: 'the protocol version negotiated' },
  clientId: { type: 'string', description: 'MQTT' },
  bytesIn: { type: 'integer', description: 'read from the socket so far, framing included' },
  bytesOut: { type: 'integer', description: 'written to the socket so far, framing included' },
  inflight: closed({ messages: { type: 'integer' }, bytes: { type: 'integer' } }),
  held: closed({ messages: { type: 'integer' }, bytes: { type: 'integer' } }),
  subscriptions: arrayOf(closed(SUB_FIELDS, OPTIONAL_SUB)),
}, ['version', 'clientId']);

const MAX_GROUP_SESSIONS = 50;

export function registerSessionRoutes(ctx: RouteContext): void {
  const { http, sessions, presence, audit } = ctx;
  const managers = requireAuth(ctx, ['admin', 'service']);
  const admins = requireAuth(ctx, ['admin']);
  const questions = new ClusterQuestions(ctx.nodeId, ctx.cluster, presence);

  /** Each node groups its own subscriptions (so an answer grows with the filters, not the sessions) and sends its `limit` most subscribed. */
  const askSubscriptions = questions.define<SubscriptionQuery, { groups: Group[]; subscriptions: number; total: number }>('console.subs?', (query) => {
    const needle = query.q?.trim().toLowerCase();
    const groups = new Map<string, Group>();
    let count = 0;
    for (const s of sessions.all()) {
      if (query.protocol !== undefined && s.protocol !== query.protocol) continue;
      for (const sub of s.describe().subscriptions) {
        const r: SubscriptionRow = { ...sub, sessionId: s.id, user: s.principal.name, protocol: s.protocol };
        if (query.kind !== undefined && r.kind !== query.kind) continue;
        if (needle && ![r.key, r.destination, r.user].some((x) => x.toLowerCase().includes(needle))) continue;
        count++;
        addTo(groups, r, ctx.nodeId);
      }
    }
    return { groups: mostSubscribed(groups).slice(0, query.limit), subscriptions: count, total: groups.size };
  });
  const askSession = questions.define<{ id: string }, SessionDetail>('console.session?', (b) => sessions.get(b.id)?.describe());

  http.get<{ Querystring: { q?: string; protocol?: string; kind?: string; limit?: number } }>(
    '/api/admin/subscriptions',
    {
      preHandler: managers,
      schema: {
        tags: ['admin'],
        operationId: 'subscriptions',
        summary: 'Live subscriptions on every node, grouped by what they are to, most subscribed first',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...TOKEN_QUERY,
            q: { type: 'string', maxLength: 200, description: 'part of the filter, destination or user name' },
            protocol: { type: 'string', enum: [...PROTOCOLS] },
            kind: { type: 'string', enum: [...KINDS] },
            limit: { type: 'integer', minimum: 1, maximum: 1000, description: 'groups (default 200)' },
          },
        },
        response: { 200: okEnvelope(closed({ groups: arrayOf(GROUP), total: { type: 'integer', description: 'groups matching before the limit (at least: each node sends its limit most subscribed)' }, subscriptions: { type: 'integer' }, missing: MISSING }), 'the subscriptions') },
      },
    },
    async (req) => {
      const { q, protocol, kind, limit = 200 } = req.query;
      const query: SubscriptionQuery = { limit, ...(q !== undefined ? { q } : {}), ...(protocol !== undefined ? { protocol } : {}), ...(kind !== undefined ? { kind } : {}) };
      const { answers, missing } = await askSubscriptions(query);
      const merged = new Map<string, Group>();
      let count = 0;
      let total = 0;
      for (const answer of answers.values()) {
        count += answer.subscriptions;
        total = Math.max(total, answer.total);
        for (const g of answer.groups) {
          const id = groupId(g);
          const m = merged.get(id);
          if (!m) {
            merged.set(id, g);
            continue;
          }
          m.subscribers += g.subscribers;
          for (const [p, n] of Object.entries(g.protocols)) m.protocols[p] = (m.protocols[p] ?? 0) + n;
          for (const x of g.qos) if (!m.qos.includes(x)) m.qos.push(x);
          for (const x of g.ack) if (!m.ack.includes(x)) m.ack.push(x);
          for (const x of g.nodes) if (!m.nodes.includes(x)) m.nodes.push(x);
          m.sessions.push(...g.sessions.slice(0, MAX_GROUP_SESSIONS - m.sessions.length));
        }
      }
      const sorted = mostSubscribed(merged);
      return ok({ groups: sorted.slice(0, limit), total: Math.max(total, sorted.length), subscriptions: count, missing });
    },
  );

  const detail = {
    tags: ['admin'],
    operationId: 'sessionDetail',
    summary: 'One session in detail, on whichever node holds it: subscriptions, messages in flight and held, bytes, TLS, credential',
    params: { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'the sessionId' } } },
    response: { 200: okEnvelope(DETAIL, 'the session'), ...errors({ 404: 'no such session is online, or its node did not answer' }) },
  };
  http.get<{ Params: { id: string } }>('/api/admin/sessions/:id', { preHandler: managers, schema: detail }, async (req) => {
    const id = req.params.id;
    const local = sessions.get(id);
    const entry = local ? undefined : (await presence.sessions()).find((s) => s.sessionId === id);
    if (!local && !entry) throw new HttpError(404, `no session ${id} is online`);
    const node = entry?.node ?? ctx.nodeId;
    const d = local ? local.describe() : (await askSession({ id }, { node })).answers.get(node);
    if (!d) throw new HttpError(404, `session ${id} is on node ${node}, which did not answer in time (or it has just ended); try again`);
    const who = local ?? { protocol: entry!.protocol, principal: { userId: entry!.userId, name: entry!.name, role: entry!.role }, device: entry!.device, remoteAddress: entry!.remoteAddress, connectedAt: entry!.connectedAt };
    return ok({
      sessionId: id,
      node,
      protocol: who.protocol,
      userId: who.principal.userId,
      user: who.principal.name,
      role: who.principal.role,
      device: who.device,
      remoteAddress: who.remoteAddress,
      connectedAt: new Date(who.connectedAt).toISOString(),
      credential: d.credential,
      tls: d.wire.tls,
      ...(d.version !== undefined ? { version: d.version } : {}),
      ...(d.clientId !== undefined ? { clientId: d.clientId } : {}),
      bytesIn: d.wire.bytesIn,
      bytesOut: d.wire.bytesOut,
      inflight: d.inflight,
      held: d.held,
      subscriptions: d.subscriptions,
    });
  });

  /** Ends every session of a user on every node, each told why in its protocol ("kicked"); its tokens stay valid. */
  const kickUser = {
    tags: ['admin'],
    operationId: 'disconnectUser',
    summary: 'End every session of a user, on every node',
    description: 'Each client is told why in its protocol; its credentials stay valid, so it may connect again (revoke its tokens to stop that).',
    params: { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'the user id (userId in the session lists)' } } },
    response: {
      200: okEnvelope(closed({ userId: { type: 'string' }, sessions: { type: 'integer', description: 'sessions told to end' }, nodes: arrayOf({ type: 'string' }) }), 'told to end'),
      ...errors({ 404: 'the user has no session online' }),
    },
  };
  http.post<{ Params: { id: string } }>('/api/admin/users/:id/disconnect', { preHandler: admins, schema: kickUser }, async (req) => {
    const userId = req.params.id;
    const theirs = (await presence.sessions()).filter((s) => s.userId === userId);
    if (theirs.length === 0) throw new HttpError(404, `user ${userId} has no session online`);
    const by = `disconnected by ${req.principal!.name}`;
    for (const s of theirs) presence.kick(s.node, s.sessionId, by);
    const nodes = [...new Set(theirs.map((s) => s.node))];
    await audit.record(req, 'session.disconnect-user', `every session of ${theirs[0]!.name}`, { sessions: theirs.length, nodes });
    return ok({ userId, sessions: theirs.length, nodes });
  });
}

interface SubscriptionQuery {
  q?: string;
  protocol?: string;
  kind?: string;
  limit: number;
}

/** Subscriptions to one thing, on one node or (merged) on all. */
interface Group {
  kind: SubscriptionInfo['kind'];
  key: string;
  group?: string;
  stomp?: string;
  subscribers: number;
  protocols: Record<string, number>;
  qos: number[];
  ack: string[];
  nodes: string[];
  sessions: (SubscriptionRow & { node: string })[];
}

const groupId = (g: { kind: string; group?: string; key: string }): string => `${g.kind}\u0000${g.group ?? ''}\u0000${g.key}`;

function addTo(groups: Map<string, Group>, r: SubscriptionRow, node: string): void {
  const id = groupId(r);
  let g = groups.get(id);
  if (!g) {
    g = {
      kind: r.kind,
      key: r.key,
      ...(r.group !== undefined ? { group: r.group } : {}),
      ...(r.kind === 'topic' || r.kind === 'shared' ? { stomp: '/topic/' + topicToDotted(r.key) } : {}),
      subscribers: 0,
      protocols: {},
      qos: [],
      ack: [],
      nodes: [node],
      sessions: [],
    };
    groups.set(id, g);
  }
  g.subscribers++;
  g.protocols[r.protocol] = (g.protocols[r.protocol] ?? 0) + 1;
  if (r.qos !== undefined && !g.qos.includes(r.qos)) g.qos.push(r.qos);
  if (r.ack !== undefined && !g.ack.includes(r.ack)) g.ack.push(r.ack);
  if (g.sessions.length < MAX_GROUP_SESSIONS) g.sessions.push({ ...r, node });
}

function mostSubscribed(groups: Map<string, Group>): Group[] {
  return [...groups.values()].sort((a, b) => b.subscribers - a.subscribers || a.key.localeCompare(b.key));
}
