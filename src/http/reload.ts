/**
 * POST /api/admin/reload (admin only): what SIGHUP does, with the outcome in
 * the answer. 200 when every configured part reloaded; 422 when one did not
 * (its new files are bad, or the JWKS did not answer): the message names
 * each failure, `data` holds the report of every part, and the parts that
 * failed keep what they had. A script calling it with `curl --fail` sees
 * the failure.
 */
import type { TlsFiles } from '../transports/tls.js';
import { reloadFailures, reloadNode } from '../reload.js';
import { requireAuth, type RouteContext } from './app.js';
import { HttpError, ok } from './envelope.js';
import { errors, okEnvelope, type JsonSchema } from './schemas.js';

/** One part of the reload report: whether it is configured, whether it reloaded, and what is in force. */
const PART: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['configured', 'ok'],
  properties: {
    configured: { type: 'boolean', description: 'false: nothing of this kind is configured (then ok is true)' },
    ok: { type: 'boolean' },
    reason: { type: 'string', description: 'why it did not reload (what was in force stays)' },
    file: { type: 'string', description: 'aclFile' },
    rules: { type: 'integer', description: 'rules in force afterwards' },
    certFile: { type: 'string', description: 'tlsCertFile' },
    url: { type: 'string', description: 'jwtJwksUrl, credentials redacted' },
    keys: { type: 'integer', description: 'keys in use afterwards' },
  },
};
const REPORT: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['ok', 'acl', 'tls', 'jwks'],
  properties: { ok: { type: 'boolean', description: 'every configured part reloaded' }, acl: PART, tls: PART, jwks: PART },
};

export function registerReloadRoute(ctx: RouteContext, tls: TlsFiles | undefined): void {
  const admin = requireAuth(ctx, ['admin']);
  const schema = {
    tags: ['admin'],
    operationId: 'reload',
    summary: 'Read aclFile and the TLS files again and fetch the JWKS again, as SIGHUP does',
    description: 'On this node only. Each part stands alone: one whose new files do not load keeps what it had.',
    response: { 200: okEnvelope(REPORT, 'every configured part reloaded'), ...errors({ 422: 'a configured part did not reload: the message names each failure, and data holds the report' }) },
  };
  ctx.http.post('/api/admin/reload', { preHandler: admin, schema }, async (req) => {
    ctx.log.info({ by: req.principal?.name }, 'reload asked for over the HTTP API');
    const report = await reloadNode({ ...ctx, tls });
    await ctx.audit.record(req, 'acl.reload', `node ${ctx.nodeId}`, { ok: report.ok, ...(report.ok ? {} : { failed: reloadFailures(report) }) });
    if (!report.ok) throw new HttpError(422, `not everything was reloaded: ${reloadFailures(report)}`, {}, report);
    return ok(report);
  });
}
