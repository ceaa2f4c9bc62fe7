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

export function registerAdminRoutes(ctx: RouteContext, tls: TlsFiles | undefined): void {
  const admin = requireAuth(ctx, ['admin']);
  ctx.http.post('/api/admin/reload', { preHandler: admin }, async (req) => {
    ctx.log.info({ by: req.principal?.name }, 'reload asked for over the HTTP API');
    const report = await reloadNode({ ...ctx, tls });
    if (!report.ok) throw new HttpError(422, `not everything was reloaded: ${reloadFailures(report)}`, {}, report);
    return ok(report);
  });
}
