/**
 * How a webhook request is signed, the Stripe way: `Herald-Signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`. The time
 * is inside the signed text, so a receiver that refuses old timestamps also
 * refuses replays of a captured request.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

function mac(secret: string, unixSeconds: number, body: string): Buffer {
  return createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest();
}

/** The `Herald-Signature` value of `body` sent at `unixSeconds`. */
export function signature(secret: string, unixSeconds: number, body: string): string {
  return `t=${unixSeconds},v1=${mac(secret, unixSeconds, body).toString('hex')}`;
}

/** Every header of one attempt (the body is the same for every attempt; the time and so the signature are not). */
export function webhookHeaders(eventId: string, secret: string, body: string, nowMs: number): Record<string, string> {
  const t = Math.floor(nowMs / 1000);
  return {
    'content-type': 'application/json',
    'user-agent': 'Herald-Webhooks/1',
    'herald-event-id': eventId,
    'herald-timestamp': String(t),
    'herald-signature': signature(secret, t, body),
  };
}

/**
 * What a receiver does (and what `herald webhook test` can be checked
 * against): true when the header carries a v1 signature of `body` by
 * `secret` made within `toleranceSeconds` of `nowMs`.
 */
export function verifySignature(secret: string, header: string, body: string, nowMs: number, toleranceSeconds = 300): boolean {
  const parts = new Map<string, string[]>();
  for (const item of header.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) continue;
    const k = item.slice(0, eq).trim();
    parts.set(k, [...(parts.get(k) ?? []), item.slice(eq + 1).trim()]);
  }
  const t = Number(parts.get('t')?.[0]);
  if (!Number.isInteger(t) || Math.abs(nowMs / 1000 - t) > toleranceSeconds) return false;
  const expected = mac(secret, t, body);
  return (parts.get('v1') ?? []).some((v) => {
    const got = Buffer.from(v, 'hex');
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}
