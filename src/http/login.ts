/** POST /v1/login, POST /v1/logout, GET /v1/me: the token lifecycle seen from HTTP. */
import type { RouteContext } from './app.js';
import { ok } from './envelope.js';
import { requireAuth } from './app.js';
import { tokenFrom } from '../transports/handshake.js';

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
        body: {
          type: 'object',
          required: ['username', 'password'],
          additionalProperties: false,
          properties: {
            username: { type: 'string', minLength: 1, maxLength: 128 },
            password: { type: 'string', minLength: 1, maxLength: 1024 },
          },
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

  http.post('/v1/logout', { preHandler: requireAuth(ctx) }, async (req) => {
    const token = tokenFrom(req.headers, new URL(req.url, 'http://x').searchParams)!;
    await auth.revokeToken(token);
    return ok(null);
  });

  http.get('/v1/me', { preHandler: requireAuth(ctx) }, async (req) => {
    const p = req.principal!;
    return ok({ userId: p.userId, name: p.name, role: p.role, via: p.credential.kind });
  });
}
