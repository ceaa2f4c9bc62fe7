/**
 * Which HTTP routes the public ports answer once `adminPort` is set.
 *
 * The admin surface moves to the admin listener: `/metrics`, the console
 * (`/console` and its files), `/api/admin/*`, and every route only the
 * admin role may call (users and MQTT apps, and any added later: the
 * routes are told apart by their requireAuth pre-handler, not by a list
 * kept by hand). On the HTTP and HTTPS ports those answer 404.
 *
 * The admin listener serves the whole app, not only the admin routes: the
 * console logs in (`/v1/login`) and reads messages, threads and clients
 * through the ordinary API, on its own origin. Routes a `service`
 * credential may call (publishing, the message service's management
 * calls, thread management) stay on the public ports, where back-ends call them.
 */
import type { FastifyInstance } from 'fastify';
import { guardedRoles } from './app.js';

/** Route URLs (as declared, `/console/*`) that belong to the admin surface whatever their pre-handler. */
function adminPath(url: string): boolean {
  return url === '/metrics' || url === '/console' || url.startsWith('/console/') || url.startsWith('/api/admin/');
}

/** A route only the admin role may call. */
function adminOnly(preHandler: unknown): boolean {
  const roles = guardedRoles(preHandler);
  return roles !== undefined && roles.length > 0 && roles.every((r) => r === 'admin');
}

/**
 * Answers the admin routes only on connections `onAdminListener` accepts
 * (404 elsewhere). Call before any route is added: routes are classified
 * as they are declared.
 */
export function separateAdminRoutes(app: FastifyInstance, onAdminListener: (socket: object) => boolean): void {
  /** `METHOD url` of each admin route. */
  const adminRoutes = new Set<string>();
  app.addHook('onRoute', (route) => {
    if (!adminPath(route.url) && !adminOnly(route.preHandler)) return;
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) adminRoutes.add(`${method} ${route.url}`);
  });
  app.addHook('onRequest', async (req, reply) => {
    const url = req.routeOptions.url;
    if (url === undefined) return undefined;
    // HEAD is answered by the GET route.
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (!adminRoutes.has(`${method} ${url}`) && !adminRoutes.has(`${req.method} ${url}`)) return undefined;
    if (onAdminListener(req.raw.socket)) return undefined;
    void reply.code(404).send({ code: 404, message: `no route for ${req.method} ${req.url.split('?')[0]} on this port (admin routes are served on the admin port, adminPort)`, data: null });
    return reply;
  });
}
