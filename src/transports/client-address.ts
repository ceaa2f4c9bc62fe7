/** The client's address as an HTTP request or WebSocket handshake gives it. */
import type { IncomingMessage } from 'node:http';

/** The socket's peer, or behind a trusted proxy (`trustProxy`) the first address of X-Forwarded-For. */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const fwd = req.headers['x-forwarded-for'];
    if (typeof fwd === 'string' && fwd) return fwd.split(',')[0]!.trim();
  }
  return req.socket.remoteAddress ?? 'unknown';
}
