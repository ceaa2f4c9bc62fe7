/**
 * The fastify instance: envelope on every answer (including 404s, validation
 * errors and oversized bodies), CORS, and the authentication pre-handler
 * routes use.
 */
import { Ajv, type ErrorObject } from 'ajv';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import { AuthError, type Principal } from '../core/auth.js';
import { storeUnavailable, type Role } from '../store/store.js';
import type { HeraldContext } from '../context.js';
import { HttpError } from './envelope.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Token from `X-Auth-Token`, `Authorization: Bearer …` or the `__token` query parameter, in that order. */
export function tokenFrom(headers: IncomingHttpHeaders, query: URLSearchParams): string | undefined {
  const header = headers['x-auth-token'];
  if (typeof header === 'string' && header !== '') return header.trim();
  const authz = headers.authorization;
  if (typeof authz === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
    if (m) return m[1];
  }
  return query.get('__token') ?? undefined;
}

export function authErrorStatus(err: AuthError): number {
  switch (err.code) {
    case 'rate_limited':
      return 429;
    case 'user_disabled':
      return 403;
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

export function createHttpApp(ctx: Omit<HeraldContext, 'http' | 'listeners'>): FastifyInstance {
  const { config, log, metrics } = ctx;
  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.httpBodyLimit,
    trustProxy: config.trustProxy,
    return503OnClosing: true,
  });

  // Bodies are strict (a number is not a string); query strings are text, so they are coerced.
  const strict = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: true });
  const lenient = new Ajv({ allErrors: false, coerceTypes: 'array', removeAdditional: false, useDefaults: true });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? strict : lenient).compile(schema as object),
  );
  app.setSchemaErrorFormatter((errors, dataVar) => new Error(describeValidation(errors as ErrorObject[], dataVar)));

  app.decorateRequest('principal', null);

  // CORS: browsers on other origins call the API (seeds 001 and 003).
  const origins = config.corsOrigins
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  app.addHook('onRequest', async (req, reply) => {
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
            .header(
              'access-control-allow-headers',
              req.headers['access-control-request-headers'] ?? 'Content-Type, Authorization, X-Auth-Token',
            )
            .header('access-control-max-age', '600')
            .code(204)
            .send();
          return reply;
        }
      }
    }
    return undefined;
  });

  app.addHook('onResponse', async (req, reply) => {
    metrics.httpRequests.inc({ route: req.routeOptions.url ?? 'unmatched', status: `${Math.floor(reply.statusCode / 100)}xx` });
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
    if (status >= 500) req.log.error({ err, url: req.url }, 'request failed');
    else req.log.debug({ status, message, url: req.url }, 'request refused');
    void reply.code(status).send({ code: status, message, data });
  });

  return app;
}

/**
 * Pre-handler that requires a live token (renewing it) and, if given, one of `roles`.
 * 401 for a missing/dead token, 403 for the wrong role.
 */
export function requireAuth(ctx: Pick<HeraldContext, 'auth'>, roles?: readonly Role[]) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const url = new URL(req.url, 'http://x');
    const token = tokenFrom(req.headers, url.searchParams);
    if (!token) {
      throw new HttpError(401, 'authentication required: pass the token as X-Auth-Token, Authorization: Bearer, or __token');
    }
    const principal = await ctx.auth.authenticate(token, { renew: true });
    if (roles && !roles.includes(principal.role)) {
      throw new HttpError(403, `this needs the ${roles.join(' or ')} role; you are "${principal.name}" (${principal.role})`);
    }
    req.principal = principal;
  };
}
