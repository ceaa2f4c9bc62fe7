/**
 * `herald webhook test URL [--secret S]`: sends one signed sample event to a
 * receiver, as the delivery worker would, and prints what came back, so a
 * receiver's signature check can be tried before any real event flows.
 * The secret is `--secret`, or that of the configured webhook with this URL.
 * Exit 0 on a 2xx answer, 1 otherwise.
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { post } from '../webhooks/delivery.js';
import { EXIT_FAILURE, fail } from './common.js';

export const WEBHOOK_OPTIONS = ['--secret'];
const USAGE = 'usage: herald webhook test URL [--secret SECRET]';

export async function webhookCommand(config: Config, args: string[], extra: Record<string, string>): Promise<void> {
  const [sub, url, more] = args;
  if (sub !== 'test' || !url) fail(USAGE);
  if (more !== undefined) fail(`unexpected argument "${more}"; ${USAGE}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    fail(`"${url}" is not a URL; give the receiver's http:// or https:// URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') fail(`the URL must be http:// or https://, not ${parsed.protocol}//`);
  const configured = config.webhooks.find((w) => w.url === url);
  const secret = extra['secret'] ?? configured?.secret;
  if (!secret) fail(`no secret: give --secret, or add a webhook with this URL to the config file's "webhooks"`);

  const id = randomUUID();
  const body = JSON.stringify({
    id,
    type: 'webhook.test',
    createdAt: new Date().toISOString(),
    data: { message: 'a sample event sent by "herald webhook test"; a receiver should answer 2xx, and ignore event types it does not know' },
  });
  const started = performance.now();
  const outcome = await post(url, id, secret, body, config.webhookTimeoutMs, Date.now());
  const ms = Math.round(performance.now() - started);
  if (outcome.ok) {
    process.stdout.write(`POST ${url}: ${outcome.status} in ${ms} ms (event ${id}, signed with ${extra['secret'] !== undefined ? '--secret' : `the secret of webhook ${configured!.name}`})\n`);
    return;
  }
  process.stdout.write(`POST ${url}: failed in ${ms} ms: ${outcome.error}\n`);
  process.exit(EXIT_FAILURE);
}
