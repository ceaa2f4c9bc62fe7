/**
 * The fastify instance: envelope on every answer (including 404s, validation
 * errors and oversized bodies), CORS, request time limits, JSON depth limit,
 * credential-free logs, and the authentication pre-handler routes use.
 */
import { Ajv, type ErrorObject } from 'ajv';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { errorText } from '../core/background.js';
import { AuthError, type Principal } from '../core/auth.js';
import { storeUnavailable, type Role } from '../store/store.js';
import type { HeraldContext } from '../context.js';
import type { MetricHistory } from '../core/history.js';
import type { AuditTrail } from './audit.js';
import { redactCredentials, REDACT_PATHS } from '../log.js';
import { HttpError } from './envelope.js';
import { jsonDepthProblem } from '../core/json-depth.js';
import { tokenFrom } from '../transports/handshake.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}


export function authErrorStatus(err: AuthError): number {
  switch (err.code) {
    case 'rate_limited':
      return 429;
    case 'user_disabled':
      return 403;
    case 'unavailable':
      return 503;
    default:
      return 401;
  }
}

/** Ajv message → words: `body has unknown field "x"`, `body/username must be string`. */
function describeValidation(errors: ErrorObject[], part: string): string {
  const e = errors[0];
  if (!e) return `${part} is not valid`;
  const where = part + (e.instancePath || '');
  if (e.keyword === 'additionalProperties') {
    return `${where} has unknown field "${String(e.params['additionalProperty'])}"`;
  }
  if (e.keyword === 'required') return `${where} is missing required field "${String(e.params['missingProperty'])}"`;
  return `${where} ${e.message ?? 'is not valid'}`;
}

/**
 * Request headers a browser on another origin may send (the CORS preflight's
 * answer, whatever it asked for): what the console, the demo pages and the
 * browser clients of the integrations send, and nothing else.
 */
export const CORS_ALLOWED_HEADERS = 'content-type, authorization, x-auth-token, x-requested-with';

/** How often Node looks for requests past their time limits (its default, 30 s, would let a limit of 2 s run to 32). */
const TIMEOUT_CHECK_MS = 500;

/** The raw answer to a request Node refused before fastify saw it whole (too slow, malformed, headers too large). */
function rawRefusal(status: number, message: string): string {
  const body = JSON.stringify({ code: status, message, data: null });
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n' +
    body
  );
}

/**
 * What a route module gets: the node's context, the Fastify app to add its
 * routes to, the audit trail admin routes record into, and this node's history
 * of the overview series.
 */
export type RouteContext = HeraldContext & { readonly http: FastifyInstance; readonly audit: AuditTrail; readonly history: MetricHistory };

export function createHttpApp(ctx: Omit<HeraldContext, 'listeners'>): FastifyInstance {
  const { config, log, metrics } = ctx;
  // A request has httpRequestTimeoutSeconds to arrive whole, and at most 10 s of that for its headers:
  // a client that dribbles its headers or body (slowloris) holds a socket no longer than that.
  const requestTimeout = config.httpRequestTimeoutSeconds * 1000;
  const headersTimeout = Math.min(10_000, requestTimeout);
  const httpLog = log.child({ component: 'http' }, { redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } });
  const app = Fastify({
    loggerInstance: httpLog as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.httpBodyLimit,
    trustProxy: config.trustProxy,
    return503OnClosing: true,
    requestTimeout,
    http: { requestTimeout, headersTimeout, connectionsCheckingInterval: TIMEOUT_CHECK_MS },
    clientErrorHandler(err, socket: Socket) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      let status = 400;
      let message = 'the request is not valid HTTP';
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        status = 408;
        message =
          `the request did not arrive whole within ${config.httpRequestTimeoutSeconds} s (httpRequestTimeoutSeconds)` +
          (headersTimeout < requestTimeout ? `, or its headers within ${headersTimeout / 1000} s` : '');
      } else if (err.code === 'HPE_HEADER_OVERFLOW') {
        status = 431;
        message = 'the request headers are too large';
      }
      metrics.protocolErrors.inc({ protocol: 'http', reason: status === 408 ? 'request_timeout' : 'bad_request' });
      httpLog.debug({ status, code: err.code, address: socket.remoteAddress }, 'HTTP request refused before it was read');
      // An answer already under way (the handler replied before the body ended) is not interrupted by a second one.
      const answering = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
      if (socket.writable && !answering) socket.write(rawRefusal(status, message));
      socket.destroy();
    },
  });

  // JSON bodies are checked for depth before they are parsed (see json-depth.ts); the rest is fastify's own
  // parser, with its defences against prototype poisoning.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const problem = jsonDepthProblem(body as string);
    if (problem) {
      done(new HttpError(400, `body is not accepted: ${problem}`), undefined);
      return;
    }
    parseJson(req, body as string, done);
  });

  // Bodies are strict (a number is not a string); query strings are text, so they are coerced.
  const strict = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: true });
  const lenient = new Ajv({ allErrors: false, coerceTypes: 'array', removeAdditional: false, useDefaults: true });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? strict : lenient).compile(schema as object),
  );
  // Answers are written with JSON.stringify, as routes without a response schema are: a response schema
  // describes the answer (the OpenAPI document, /api/openapi.json) and never filters it, so a field it
  // does not name is not silently dropped (fast-json-stringify would drop it).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.setSchemaErrorFormatter((errors, dataVar) => new Error(describeValidation(errors as ErrorObject[], dataVar)));

  app.decorateRequest('principal', null);

  // CORS: browsers on other origins call the API (the notifications and customer-service chat clients).
  const origins = config.corsOrigins
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  // Hooks with a callback, not async: a promise and its microtask per request each is measurable (docs/performance.md).
  app.addHook('onRequest', (req, reply, done) => {
    // API answers are per caller and often secret: no cache keeps them, and no browser guesses their type.
    // (The console and demo files set their own caching when they are served.)
    void reply.header('x-content-type-options', 'nosniff').header('cache-control', 'no-store');
    const origin = req.headers.origin;
    if (origin && origins.length > 0) {
      const allowed = origins.includes('*') ? '*' : origins.includes(origin) ? origin : undefined;
      if (allowed) {
        reply.header('access-control-allow-origin', allowed);
        if (allowed !== '*') reply.header('vary', 'Origin');
        reply.header('access-control-expose-headers', 'Retry-After');
        if (req.method === 'OPTIONS' && req.headers['access-control-request-method']) {
          reply
            .header('access-control-allow-methods', 'GET, POST, PUT, PATCH, DELETE, OPTIONS')
            .header('access-control-allow-headers', CORS_ALLOWED_HEADERS)
            .header('access-control-max-age', '600')
            .code(204)
            .send();
          return;
        }
      }
    }
    done();
  });

  // herald_http_request_duration_seconds: by the route's pattern (`/api/users/:id`), never the URL, so the
  // series stay as few as the routes; a request no route took (404, a CORS preflight) is "unmatched".
  app.addHook('onResponse', (req, reply, done) => {
    metrics.observeHttp(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ code: 404, message: `no route for ${req.method} ${req.url.split('?')[0]}`, data: null });
  });

  app.setErrorHandler((err: FastifyError | HttpError | AuthError | Error, req, reply) => {
    let status = 500;
    let message = 'internal error; the server log has the details';
    let data: unknown = null;
    if (err instanceof HttpError) {
      status = err.status;
      message = err.message;
      data = err.data;
      for (const [k, v] of Object.entries(err.headers)) void reply.header(k, v);
    } else if (err instanceof AuthError) {
      metrics.authFailed('http', err.code);
      status = authErrorStatus(err);
      message = err.message;
      if (err.retryAfterSeconds !== undefined) void reply.header('retry-after', String(err.retryAfterSeconds));
    } else if (storeUnavailable(err)) {
      // Nothing was stored: the caller may send the same request again.
      status = 503;
      message = 'the message store is unavailable; nothing was changed, try again shortly';
      void reply.header('retry-after', '5');
    } else if ('validation' in err && err.validation) {
      status = 400;
      message = err.message;
    } else if ('code' in err && typeof err.code === 'string' && err.code.startsWith('FST_')) {
      status = err.statusCode ?? 400;
      switch (err.code) {
        case 'FST_ERR_CTP_BODY_TOO_LARGE':
          message = `request body is larger than the ${config.httpBodyLimit}-byte limit`;
          break;
        case 'FST_ERR_CTP_INVALID_JSON_BODY':
          message = `body is not valid JSON: ${err.message}`;
          break;
        case 'FST_ERR_CTP_EMPTY_JSON_BODY':
          message = 'body is empty; send a JSON object';
          break;
        case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
          message = `content type ${req.headers['content-type'] ?? '(none)'} is not supported; send application/json`;
          break;
        default:
          message = err.message;
      }
    } else if (err instanceof SyntaxError && 'statusCode' in err) {
      status = 400;
      message = `body is not valid JSON: ${err.message}`;
    } else if ('statusCode' in err && typeof err.statusCode === 'number' && err.statusCode < 500) {
      status = err.statusCode;
      message = err.message;
    }
    // The URL may carry a token (`?__token=`): it is logged without it.
    const url = redactCredentials(req.url);
    // A refusal the server chose (HttpError) or the store being down is no bug: a line without a stack.
    if (status >= 500 && !(err instanceof HttpError) && status !== 503) req.log.error({ err, url }, 'request failed');
    else if (status >= 500) req.log.warn({ status, message: redactCredentials(message), err: redactCredentials(errorText(err)), url }, 'request refused');
    else req.log.debug({ status, message: redactCredentials(message), url }, 'request refused');
    void reply.code(status).send({ code: status, message, data });
  });

  return app;
}

/**
 * Pre-handler that requires a live token (renewing it) and, if given, one of `roles`.
 * 401 for a missing/dead token, 403 for the wrong role.
 */
export function requireAuth(ctx: Pick<HeraldContext, 'auth' | 'metrics'>, roles?: readonly Role[]) {
  const guard = async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const token = tokenFrom(req.headers, queryOf(req.url));
    if (!token) {
      ctx.metrics.authFailed('http', 'no_credentials');
      throw new HttpError(401, 'authentication required: pass the token as X-Auth-Token, Authorization: Bearer, or __token');
    }
    // A refused token counts against the caller's address (tokenFailuresPerAddress), never as a failed login.
    const principal = await ctx.auth.authenticate(token, { renew: true, address: req.ip });
    if (roles && !roles.includes(principal.role)) {
      throw new HttpError(403, `this needs the ${roles.join(' or ')} role; you are "${principal.name}" (${principal.role})`);
    }
    req.principal = principal;
  };
  AUTH_GUARDS.set(guard, roles ?? []);
  return guard;
}

const NO_QUERY = new URLSearchParams();

/** The query of a request target, as `new URL(target, base).searchParams` reads it, without parsing the rest of the URL. */
function queryOf(target: string): URLSearchParams {
  const q = target.indexOf('?');
  if (q < 0) return NO_QUERY;
  return new URL(target.slice(q), 'http://x/').searchParams;
}

/**
 * The pre-handlers requireAuth made, with the roles each admits (empty: any
 * role), so the API description can say who may call a route and the admin
 * port can tell admin-only routes apart (http/exposure.ts).
 */
const AUTH_GUARDS = new WeakMap<object, readonly Role[]>();

/**
 * Whether a route's pre-handler(s) require a token: undefined when not; the
 * roles admitted when so (empty: any role).
 */
export function guardedRoles(preHandler: unknown): readonly Role[] | undefined {
  for (const h of Array.isArray(preHandler) ? preHandler : [preHandler]) {
    if (typeof h === 'function' && AUTH_GUARDS.has(h)) return AUTH_GUARDS.get(h);
  }
  return undefined;
}
