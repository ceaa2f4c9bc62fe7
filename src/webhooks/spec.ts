/**
 * The `webhooks` configuration key: a list of `{url, events, topics?,
 * secret, name?}` in the config file, checked strictly at start. Problems
 * come back as one line naming the entry; config.ts turns them into a
 * ConfigError.
 */
import { filterProblem } from '../core/destination.js';
import { WEBHOOK_EVENTS, isWebhookEvent, type WebhookEventType } from './events.js';

/** One configured webhook. */
export interface WebhookSpec {
  /** Names its rows in the outbox: by default the URL (give a name to change the URL and keep the backlog). */
  readonly name: string;
  readonly url: string;
  readonly events: readonly WebhookEventType[];
  /** MQTT-style filters (`news/#`) for message.published; empty: every topic. */
  readonly topics: readonly string[];
  readonly secret: string;
}

/** A webhook as written in the config file (or passed in code by tests). */
export interface WebhookInput {
  url: string;
  events: readonly string[];
  topics?: readonly string[];
  secret: string;
  name?: string;
}

const FIELDS = ['url', 'events', 'topics', 'secret', 'name'];
const NAME = /^[A-Za-z0-9._:/@-]{1,200}$/;

/**
 * Checks the whole list; returns the specs, or the first problem in words
 * (`file`, when given, names the config file it came from).
 */
export function parseWebhooks(raw: unknown, file?: string): WebhookSpec[] | { problem: string } {
  const where = file === undefined ? '' : ` in ${file}`;
  if (!Array.isArray(raw)) return { problem: `webhooks${where} must be a list of {url, events, topics?, secret} objects, not ${JSON.stringify(raw)?.slice(0, 100)}` };
  const out: WebhookSpec[] = [];
  const names = new Map<string, number>();
  for (let i = 0; i < raw.length; i++) {
    const entry: unknown = raw[i];
    const label = `webhooks[${i}]${isRecord(entry) && typeof entry['url'] === 'string' ? ` (${entry['url'].slice(0, 200)})` : ''}${where}`;
    const parsed = parseEntry(entry);
    if (typeof parsed === 'string') return { problem: `${label}: ${parsed}` };
    const earlier = names.get(parsed.name);
    if (earlier !== undefined) {
      return { problem: `${label}: webhooks[${earlier}] has the same name ${JSON.stringify(parsed.name)}; give each entry its own "name" (it defaults to the URL)` };
    }
    names.set(parsed.name, i);
    out.push(parsed);
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** One entry, or what is wrong with it. */
function parseEntry(entry: unknown): WebhookSpec | string {
  if (!isRecord(entry)) return 'must be an object {url, events, topics?, secret}';
  const unknown = Object.keys(entry).find((k) => !FIELDS.includes(k));
  if (unknown !== undefined) return `unknown field "${unknown}"; the fields are ${FIELDS.join(', ')}`;

  const url = entry['url'];
  if (typeof url !== 'string' || url === '') return 'url must be an http:// or https:// URL';
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(url);
  } catch {
    return `url ${JSON.stringify(url.slice(0, 200))} is not a URL`;
  }
  if (parsedUrl.protocol !== 'http:' && parsedUrl.protocol !== 'https:') return `url must be http:// or https://, not ${parsedUrl.protocol}//`;

  const events = entry['events'];
  if (!Array.isArray(events) || events.length === 0) return `events must be a non-empty list of event names (or ["*"] for all): ${WEBHOOK_EVENTS.join(', ')}`;
  const chosen = new Set<WebhookEventType>();
  for (const e of events) {
    if (e === '*') WEBHOOK_EVENTS.forEach((x) => chosen.add(x));
    else if (typeof e === 'string' && isWebhookEvent(e)) chosen.add(e);
    else return `unknown event ${JSON.stringify(e)}; events are ${WEBHOOK_EVENTS.join(', ')} (or "*" for all)`;
  }

  const topics = entry['topics'] ?? [];
  if (!Array.isArray(topics)) return 'topics must be a list of topic filters such as "news/#"';
  for (const t of topics) {
    if (typeof t !== 'string') return `topics must be strings (MQTT-style filters such as "news/#"), not ${JSON.stringify(t)}`;
    const problem = filterProblem(t);
    if (problem) return `topic filter ${JSON.stringify(t.slice(0, 200))}: ${problem}`;
  }
  if (topics.length > 0 && !chosen.has('message.published')) return 'topics filters message.published events, which this webhook does not take; add "message.published" to events or remove topics';

  const secret = entry['secret'];
  if (typeof secret !== 'string' || secret === '') return 'secret must be a non-empty string (the key receivers verify Herald-Signature with)';

  const name = entry['name'] ?? url;
  if (typeof name !== 'string' || !NAME.test(name)) return 'name must be 1–200 letters, digits or . _ : / @ -';

  return { name, url, events: WEBHOOK_EVENTS.filter((e) => chosen.has(e)), topics: topics as string[], secret };
}
