/**
 * The HTTP API's own description: `GET /api/openapi.json`, an OpenAPI 3.1
 * document that @fastify/swagger builds from the routes' JSON schemas.
 *
 * Each route declares its schema (tags, operationId, summary, request
 * parts, success and route-specific error answers). What every route of a
 * kind can answer is added here, in one place, when the route is
 * registered: a route behind requireAuth gets its security schemes, the
 * roles it admits, and 401/403/429/503; a route that reads a body or a
 * query gets 400 (and 413/415 for a body).
 *
 * WebSocket paths are not Fastify routes (upgrades never reach Fastify);
 * each is given a GET route here that answers a plain request 426 and is
 * described with the 101 of its handshake.
 */
import swagger from '@fastify/swagger';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import { guardedRoles } from './app.js';
import { HttpError } from './envelope.js';
import { addSharedSchemas, errorAnswer, type JsonSchema } from './schemas.js';
import type { WebSocketPath } from '../transports/listeners.js';
import { HERALD_VERSION } from '../version.js';

declare module 'fastify' {
  interface FastifySchema {
    /**
     * The request body for the description only, as an OpenAPI Request Body
     * Object, for routes whose body is optional or checked by the handler
     * (a `body` schema would make Fastify require and validate one).
     */
    'x-request-body'?: { required: boolean; description?: string; content: Record<string, { schema: JsonSchema }> };
    /** Parameters for the description only (OpenAPI Parameter Objects): headers and queries Fastify must not validate. */
    'x-parameters'?: readonly JsonSchema[];
    /** The route answers refusals HTTP 200 with the refusal in the envelope (/api/v1/message/send): no 4xx for bad requests is added. */
    'x-herald-refusals-as-200'?: boolean;
    /** Roles admitted (set here from the route's requireAuth). */
    'x-herald-roles'?: readonly string[];
  }
}

export const OPENAPI_PATH = '/api/openapi.json';

/** Any of these carries a token (from POST /v1/login, `herald token issue`, or a JWT). */
const TOKEN_SECURITY = [{ bearerToken: [] }, { headerToken: [] }, { queryToken: [] }] as const;

const SECURITY_SCHEMES = {
  bearerToken: {
    type: 'http',
    scheme: 'bearer',
    description: 'A token from POST /v1/login (or `herald token issue`), or a JWT when jwtSecret/jwtPublicKey is set: `Authorization: Bearer …`.',
  },
  headerToken: { type: 'apiKey', in: 'header', name: 'X-Auth-Token', description: 'The same token in the X-Auth-Token header.' },
  queryToken: {
    type: 'apiKey',
    in: 'query',
    name: '__token',
    description: 'The same token as the `__token` query parameter, for clients that cannot set headers (browser WebSockets). URLs end up in logs: prefer a header.',
  },
  appToken: { type: 'http', scheme: 'bearer', description: 'An MQTT app access token from POST /openapi/rm/app/token.' },
} as const;

const TAGS = [
  { name: 'auth', description: 'Logging in and out, and who a token belongs to.' },
  { name: 'users', description: 'Managing users (admin).' },
  { name: 'publish', description: 'Pushing to any destination from a back end.' },
  { name: 'message service', description: 'Messages with per-receiver delivery status (docs/json-websocket.md#message-service).' },
  { name: 'threads', description: 'Customer-service chat threads (docs/threads.md).' },
  { name: 'mqtt apps', description: 'MQTT apps and their app and user tokens (docs/mqtt.md#app-and-user-tokens).' },
  { name: 'admin', description: "The console's figures and actions on sessions." },
  { name: 'demo', description: 'What the demo pages use.' },
  { name: 'health', description: 'Liveness, readiness and Prometheus metrics.' },
  { name: 'web', description: 'The web console and the demo pages (files).' },
  { name: 'websocket', description: 'WebSocket endpoints on the HTTP port: GET with Upgrade: websocket, answered 101.' },
  { name: 'openapi', description: 'This document.' },
];

const DESCRIPTION = `Herald's HTTP API. Every answer is the envelope \`{"code":200,"message":"OK","data":…}\`; an error carries its HTTP status as \`code\` and a message that says what was wrong and what to do, with \`data: null\`. Exceptions, each said at its route: the MQTT token endpoints (\`{"code":200,"body":{…}}\`), /metrics (Prometheus text), the console and demo files, and this document.

Routes that need a token accept it as \`Authorization: Bearer\`, \`X-Auth-Token\` or the \`__token\` query parameter; \`x-herald-roles\` on an operation lists the roles it admits. A used token is renewed (it expires after tokenIdleSeconds without use).`;

/** Fastify's URL form (`/a/:id`, `/b/*`) in OpenAPI's (`/a/{id}`, `/b/{*}`), as @fastify/swagger writes it. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*/g, '{*}');
}

export interface RouteEntry {
  method: string;
  url: string;
  /** Whether it is behind requireAuth. */
  auth: boolean;
}

const CATALOGS = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Every route registered on `app` since registerOpenApi, with the HEAD twins Fastify adds to GETs left out. */
export function registeredRoutes(app: FastifyInstance): readonly RouteEntry[] {
  return CATALOGS.get(app) ?? [];
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** Adds what every route of its kind can answer to the route's own schema (a copy: schemas may be shared constants). */
function withCommonAnswers(route: RouteOptions): FastifySchema {
  const schema: FastifySchema = { ...route.schema };
  const response: Record<string, JsonSchema> = { ...(schema.response as Record<string, JsonSchema> | undefined) };
  const add = (status: number, description: string, extra: JsonSchema = {}): void => {
    if (!(String(status) in response)) response[status] = { ...errorAnswer(description), ...extra };
  };
  const retryAfter = (what: string): JsonSchema => ({ headers: { 'Retry-After': { type: 'integer', description: `seconds to wait before ${what}` } } });
  const methods = [route.method].flat();
  const roles = guardedRoles(route.preHandler);
  if (roles !== undefined) {
    schema.security = TOKEN_SECURITY;
    schema['x-herald-roles'] = roles.length > 0 ? roles : ['user', 'service', 'admin'];
    const who = roles.length > 0 ? `a token of the ${roles.join(' or ')} role` : 'a token (any role)';
    schema.description = [schema.description, `Needs ${who}.`].filter(Boolean).join('\n\n');
    add(401, 'no token, or an unknown, expired or revoked one (the message says which; an expired one: log in again)');
    add(403, roles.length > 0 ? `the user is disabled, or has another role than ${roles.join(' or ')}` : 'the user is disabled');
    add(429, 'too many refused tokens from this address (tokenFailuresPerAddress)', retryAfter('trying again'));
    add(503, 'the store is unavailable; nothing was changed, try again shortly', retryAfter('trying again'));
  }
  if (schema['x-herald-refusals-as-200'] === true) return { ...schema, response };
  const readsBody = methods.some((m) => BODY_METHODS.has(m));
  if (readsBody || schema.querystring !== undefined) {
    add(400, readsBody ? 'the body is not valid JSON, too deep, or not what this route takes (the message names the field)' : 'a query parameter is not what this route takes (the message names it)');
  }
  if (readsBody) {
    add(413, 'the body is larger than httpBodyLimit');
    add(415, 'the content type is not one this route reads (send application/json)');
  }
  if (Object.keys(response).length > 0) schema.response = response;
  return schema;
}

/** Moves each operation's `x-request-body` and `x-parameters` to where OpenAPI reads them (see FastifySchema above). */
function placeDescriptionOnly(doc: Record<string, unknown>): Record<string, unknown> {
  for (const item of Object.values((doc['paths'] ?? {}) as Record<string, Record<string, Record<string, unknown>>>)) {
    for (const op of Object.values(item)) {
      if (op['x-request-body'] !== undefined) op['requestBody'] = op['x-request-body'];
      if (op['x-parameters'] !== undefined) op['parameters'] = [...((op['parameters'] as unknown[] | undefined) ?? []), ...(op['x-parameters'] as unknown[])];
      delete op['x-request-body'];
      delete op['x-parameters'];
    }
  }
  return doc;
}

/**
 * Registers @fastify/swagger, the shared schemas and the hook above on
 * `app`, and serves the document at /api/openapi.json. Call it before any
 * route is added: routes added earlier are not seen.
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  const catalog: RouteEntry[] = [];
  CATALOGS.set(app, catalog);
  addSharedSchemas(app);
  app.addHook('onRoute', (route) => {
    const methods = [route.method].flat().filter((m) => m !== 'HEAD');
    // A HEAD route of its own (not the twin of a GET) is listed too.
    if (methods.length === 0 && !app.hasRoute({ method: 'GET', url: route.url })) methods.push('HEAD');
    const auth = guardedRoles(route.preHandler) !== undefined;
    for (const method of methods) catalog.push({ method, url: route.url, auth });
    route.schema = withCommonAnswers(route);
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.1',
      info: { title: 'Herald HTTP API', version: HERALD_VERSION, description: DESCRIPTION, license: { name: 'MIT', identifier: 'MIT' } },
      components: { securitySchemes: SECURITY_SCHEMES },
      tags: TAGS,
    },
    // Shared schemas keep their names (`Error`, `User`…) under components/schemas.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
    transformObject: (documentObject) => placeDescriptionOnly(('openapiObject' in documentObject ? documentObject.openapiObject : {}) as Record<string, unknown>),
  });

  app.get(
    OPENAPI_PATH,
    {
      schema: {
        tags: ['openapi'],
        operationId: 'getOpenApi',
        summary: 'This description of the HTTP API (OpenAPI 3.1)',
        description: 'The document itself, not in the envelope, so that tools read it as it is. Needs no token: it holds nothing secret.',
        response: {
          200: {
            description: 'the OpenAPI 3.1 document',
            type: 'object',
            additionalProperties: true,
            required: ['openapi', 'info', 'paths'],
            properties: { openapi: { type: 'string' }, info: { type: 'object' }, paths: { type: 'object' } },
          },
        },
      },
    },
    async () => app.swagger(),
  );
}

/**
 * Gives each WebSocket path a GET route that answers a plain HTTP request
 * 426 (the handshake itself is taken by the listeners before Fastify), and
 * describes the handshake there.
 */
export function registerWebSocketPaths(app: FastifyInstance, paths: readonly WebSocketPath[]): void {
  for (const p of paths) {
    const url = p.prefix ? `${p.path.replace(/\/$/, '')}/:token` : p.path;
    const { doc } = p;
    const header = (name: string, description: string, values?: readonly string[]): JsonSchema => ({
      in: 'header',
      name,
      required: true,
      description,
      schema: { type: 'string', ...(values ? { enum: values } : {}) },
    });
    const parameters: JsonSchema[] = [
      header('Upgrade', 'websocket', ['websocket']),
      header('Connection', 'Upgrade'),
      header('Sec-WebSocket-Key', 'the handshake nonce (RFC 6455)'),
      header('Sec-WebSocket-Version', 'RFC 6455', ['13']),
      ...(p.protocols.length > 0 ? [{ ...header('Sec-WebSocket-Protocol', `one or more of ${p.protocols.join(', ')}; the server picks the first it speaks, in that order`), required: false }] : []),
      { in: 'query', name: 'device', required: false, description: 'names the device in the online list (else the User-Agent)', schema: { type: 'string' } },
    ];
    // The `__token` query, X-Auth-Token and Authorization are the security schemes'; `[{}]` first makes them optional.
    const security = doc.token === 'required' ? TOKEN_SECURITY : doc.token === 'optional' ? [{}, ...TOKEN_SECURITY] : undefined;
    const refusals: Record<number, string> = { 503: 'the server is shutting down: reconnect to another node' };
    if (doc.token !== 'protocol') {
      if (doc.token === 'path') refusals[400] = 'the token in the path is not valid URL encoding';
      refusals[401] = 'the token is missing, unknown, expired or revoked';
      refusals[403] = 'the user is disabled';
      refusals[429] = `too many refused tokens from this address${doc.token === 'path' ? ', or the user has maxConnectionsPerUser connections open' : ''}`;
    }
    app.get(
      url,
      {
        schema: {
          tags: ['websocket'],
          operationId: `webSocket${p.path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase())}`,
          summary: doc.summary,
          description:
            `${doc.description}\n\nA WebSocket handshake (GET with Upgrade: websocket) is answered 101; a refused one gets the status below with the error envelope, then the connection closes. ` +
            'A plain HTTP request is answered 426.',
          ...(doc.token === 'path' ? { params: { type: 'object', required: ['token'], properties: { token: { type: 'string', description: 'the token from POST /v1/login' } } } } : {}),
          'x-parameters': parameters,
          ...(security ? { security } : {}),
          response: {
            101: { description: 'Switching Protocols: the WebSocket is open', type: 'null' },
            426: { ...errorAnswer('a plain HTTP request: this path speaks WebSocket only'), headers: { Upgrade: { type: 'string', enum: ['websocket'] } } },
            ...Object.fromEntries(Object.entries(refusals).map(([s, d]) => [s, errorAnswer(d)])),
          },
        },
      },
      async () => {
        throw new HttpError(426, `${p.path}${p.prefix ? '{token}' : ''} is a WebSocket endpoint (${doc.summary}): open it with a WebSocket client; a plain HTTP request cannot use it`, {
          upgrade: 'websocket',
        });
      },
    );
  }
}
