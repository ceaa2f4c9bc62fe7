/** POST /v1/login, POST /v1/logout, GET /v1/me: the token lifecycle seen from HTTP. */
import type { RouteContext } from './app.js';
import { ok } from './envelope.js';
import { requireAuth } from './app.js';
import { tokenFrom } from '../transports/handshake.js';
import { ROLES } from '../store/store.js';
import { NULL, arrayOf, closed, errors, okEnvelope } from './schemas.js';

interface LoginBody {
  username: string;
  password: string;
}

export function registerLoginRoutes(ctx: RouteContext): void {
  const { http, auth } = ctx;

  http.post<{ Body: LoginBody }>(
    '/v1/login',
    {
      schema: {
        tags: ['auth'],
        operationId: 'login',
        summary: 'Log in with a user name and password; answers a token',
        description:
          'The token lives while it is used: it expires after tokenIdleSeconds (expiresIn) without use, and each use renews it. ' +
          'Failed logins are limited per user name and per address (loginMaxAttempts in loginWindowSeconds).',
        body: {
          type: 'object',
          required: ['username', 'password'],
          additionalProperties: false,
          properties: {
            username: { type: 'string', minLength: 1, maxLength: 128 },
            password: { type: 'string', minLength: 1, maxLength: 1024 },
          },
        },
        response: {
          200: okEnvelope(
            arrayOf(
              closed({
                authToken: { type: 'string', description: 'the token: X-Auth-Token, Authorization: Bearer, or __token' },
                userId: { type: 'string' },
                userName: { type: 'string' },
                role: { type: 'string', enum: [...ROLES] },
                expiresIn: { type: 'integer', description: 'seconds the token lives without use (tokenIdleSeconds)' },
              }),
            ),
            'logged in: one entry (the notifications client reads data[0].authToken)',
          ),
          ...errors({
            401: 'wrong user name or password',
            403: 'the user is disabled',
            429: 'too many failed logins for this user name or address: wait for Retry-After seconds',
            503: 'the store is unavailable; try again shortly',
          }),
        },
      },
    },
    async (req) => {
      const { token, user } = await auth.login(req.body.username, req.body.password, req.ip);
      ctx.log.info({ user: user.name, address: req.ip }, 'login');
      // The notifications client reads data[0].authToken.
      return ok([{ authToken: token, userId: user.id, userName: user.name, role: user.role, expiresIn: auth.tokenIdleSeconds }]);
    },
  );

  http.post(
    '/v1/logout',
    {
      preHandler: requireAuth(ctx),
      schema: {
        tags: ['auth'],
        operationId: 'logout',
        summary: 'End the token now',
        description: 'Sockets opened with this token are told `token revoked` and closed.',
        response: { 200: okEnvelope(NULL, 'the token is dead') },
      },
    },
    async (req) => {
      const token = tokenFrom(req.headers, new URL(req.url, 'http://x').searchParams)!;
      await auth.revokeToken(token);
      return ok(null);
    },
  );

  http.get(
    '/v1/me',
    {
      preHandler: requireAuth(ctx),
      schema: {
        tags: ['auth'],
        operationId: 'me',
        summary: 'Who the token belongs to',
        response: {
          200: okEnvelope(
            closed({
              userId: { type: 'string', description: 'user id (a JWT subject Herald does not know is kept as given)' },
              name: { type: 'string' },
              role: { type: 'string', enum: [...ROLES] },
              via: { type: 'string', description: 'the kind of credential: token (from login) or jwt' },
            }),
            'the caller',
          ),
        },
      },
    },
    async (req) => {
      const p = req.principal!;
      return ok({ userId: p.userId, name: p.name, role: p.role, via: p.credential.kind });
    },
  );
}
