/**
 * The web console (`/console`, built by Vite into dist/web/console) and the
 * demo pages (`/demo`, plain pages copied into dist/web/demo with the client
 * libraries the integrations use), plus the few API routes only they need:
 * an overview for the console's charts, disconnecting a session, and a
 * "push me a notification" button for the notifications demo.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply } from 'fastify';
import type { RouteContext } from './app.js';
import { createMessage } from '../core/message.js';
import { requireAuth } from './app.js';
import { HttpError, ok } from './envelope.js';
import { closed, errors, okEnvelope, type JsonSchema } from './schemas.js';

/** The answers of the file routes (/console/…, /demo/…). */
function fileAnswers(what: string): Record<number, JsonSchema> {
  return {
    200: { description: `a file of ${what}: HTML, JavaScript, CSS, images or JSON, by its extension`, content: { '*/*': { schema: { type: 'string', format: 'binary' } } } },
    ...errors({ 404: 'no such file', 503: 'the console and demo pages are not built: run "npm run build" and restart' }),
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.ico': 'image/x-icon',
};

/** dist/web, whether Herald runs from dist (dist/http/web.js) or from source under tsx (src/http/web.ts). */
function webRoot(): string | undefined {
  for (const rel of ['../web/', '../../dist/web/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(dir, 'console', 'index.html'))) return dir;
  }
  return undefined;
}

export function registerWebRoutes(ctx: RouteContext): void {
  const { http } = ctx;
  const root = webRoot();

  const serve = (reply: FastifyReply, base: string, rest: string): FastifyReply => {
    if (!root) {
      throw new HttpError(503, 'the console and demo pages are not built: run "npm run build" (npm install does it) and restart');
    }
    const dir = join(root, base);
    const file = normalize(join(dir, rest || 'index.html'));
    if (!file.startsWith(dir + sep) && file !== dir) throw new HttpError(404, 'no such file');
    let path = file;
    if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'index.html');
    if (!existsSync(path)) throw new HttpError(404, `no such page: /${base}/${rest}`);
    const type = TYPES[extname(path)] ?? 'application/octet-stream';
    // Built assets carry a content hash in their names; pages must always be fresh.
    const immutable = /[.-][A-Za-z0-9_-]{8,}\.(js|css)$/.test(path) && path.includes(`${sep}assets${sep}`);
    return reply
      .header('content-type', type)
      .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .send(readFileSync(path));
  };

  /**
   * Neither the console nor the demos may be framed (clickjacking an admin's
   * clicks) or leak their URL as a referrer. The console, all built assets,
   * also runs under a strict CSP: only its own scripts and styles, and network
   * access to this origin only (its API and its STOMP and MQTT WebSockets). The demo
   * pages keep their scripts inline, to be read and copied, so get no CSP.
   */
  const CONSOLE_CSP =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  http.addHook('onSend', async (req, reply) => {
    const url = req.url;
    if (!url.startsWith('/console') && !url.startsWith('/demo')) return;
    void reply.header('x-frame-options', 'DENY').header('referrer-policy', 'no-referrer');
    if (url.startsWith('/console')) void reply.header('content-security-policy', CONSOLE_CSP);
  });

  // Browsers ask every origin for /favicon.ico (the demo pages too); the console's icon answers, not a 404.
  http.get(
    '/favicon.ico',
    {
      schema: {
        tags: ['web'],
        operationId: 'favicon',
        summary: "The console's icon (browsers ask every origin for it)",
        response: {
          200: { description: 'the icon', content: { 'image/x-icon': { schema: { type: 'string', format: 'binary' } } } },
          ...errors({ 503: 'the console is not built: run "npm run build" and restart' }),
        },
      },
    },
    async (_req, reply) => serve(reply, 'console', 'favicon.ico'),
  );

  for (const base of ['console', 'demo']) {
    const what = base === 'console' ? 'the web console' : 'the demo pages';
    const tags = ['web'];
    http.get(
      `/${base}`,
      {
        schema: {
          tags,
          operationId: `${base}Redirect`,
          summary: `Redirects to /${base}/`,
          response: { 302: { description: `to /${base}/`, type: 'null', headers: { Location: { type: 'string', enum: [`/${base}/`] } } } },
        },
      },
      async (_req, reply) => reply.redirect(`/${base}/`),
    );
    http.get<{ Params: { '*': string } }>(
      `/${base}/*`,
      {
        schema: {
          tags,
          operationId: `${base}File`,
          summary: `${what.replace(/^t/, 'T')} (static files)`,
          description: base === 'console' ? 'The console signs in with POST /v1/login and uses the admin API; see docs/console.md.' : 'Plain pages that show the client integrations; see docs/clients.md.',
          params: { type: 'object', properties: { '*': { type: 'string', description: 'the file path; empty for index.html' } } },
          response: fileAnswers(what),
        },
      },
      async (req, reply) => serve(reply, base, req.params['*']),
    );
  }

  /**
   * The notifications demo's button: the server pushes a stream
   * notification to the caller's own `strm` mailbox, as a media service would.
   */
  http.post<{ Body: { act?: string } | undefined }>(
    '/api/demo/notify',
    {
      preHandler: requireAuth(ctx),
      schema: {
        tags: ['demo'],
        operationId: 'demoNotify',
        summary: 'Push a stream notification to your own strm mailbox (the notifications demo)',
        'x-request-body': {
          required: false,
          content: { 'application/json': { schema: { type: 'object', properties: { act: { type: 'string', pattern: '^[a-zA-Z]{1,32}$', default: 'opened' } } } } },
        },
        response: {
          200: okEnvelope(
            closed({
              notif: closed(
                {
                  act: { type: 'string' },
                  simNo: { type: 'string' },
                  channel: { type: 'integer' },
                  closeCause: { type: 'integer', description: 'present when act is closed' },
                  at: { type: 'string', format: 'date-time' },
                },
                ['closeCause'],
              ),
              delivered: { type: 'integer', description: 'your sessions it was pushed to' },
            }),
            'pushed',
          ),
        },
      },
    },
    async (req) => {
      const p = req.principal!;
      const act = typeof req.body?.act === 'string' && /^[a-zA-Z]{1,32}$/.test(req.body.act) ? req.body.act : 'opened';
      const notif = { act, simNo: '013800000001', channel: 1, closeCause: act === 'closed' ? 1 : undefined, at: new Date().toISOString() };
      const delivered = ctx.broker.publishUser(
        createMessage({ target: { kind: 'user', userId: p.userId, name: 'strm' }, body: Buffer.from(JSON.stringify(notif)), contentType: 'application/json' }),
      );
      return ok({ notif, delivered });
    },
  );
}
