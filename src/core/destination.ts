/**
 * Canonical destination names, independent of any protocol.
 *
 * A topic is a list of levels. Its canonical key is the MQTT form, levels
 * joined by `/` (`a/b/c`). STOMP writes the same topic `/topic/a.b.c` and the
 * JSON WebSocket `a.b.c`. Like RabbitMQ, a `/` inside a STOMP level becomes
 * `.` in MQTT and back, so nothing is lost either way.
 * Wildcards: one level `*` (STOMP) / `+` (MQTT); any number of trailing
 * levels `#` in both.
 */

export type TopicFilter = string; // canonical (MQTT) form, may hold + and #

/** STOMP/JSON `a.b.c` (without `/topic/`) → canonical `a/b/c`; `*` → `+`. */
export function topicFromDotted(name: string): string {
  const levels = name.split('.');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    levels[i] = l === '*' ? '+' : l.includes('/') ? l.replaceAll('/', '.') : l;
  }
  return levels.join('/');
}

/** Canonical `a/b/c` → STOMP/JSON `a.b.c`; `+` → `*`. */
export function topicToDotted(key: string): string {
  const levels = key.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    levels[i] = l === '+' ? '*' : l.includes('.') ? l.replaceAll('.', '/') : l;
  }
  return levels.join('.');
}

/**
 * Checks a topic filter: `#` only as the whole last level, `+` only as a whole
 * level, no empty filter. Returns a reason when invalid.
 */
/**
 * Most levels a topic or filter may have (as mosquitto's topic hierarchy
 * limit): matching costs grow with the levels, and no real topic comes near.
 */
export const MAX_TOPIC_LEVELS = 200;

/** Why a topic or filter has too many levels, or undefined. Linear, without splitting. */
export function levelsProblem(topic: string): string | undefined {
  let levels = 1;
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f && ++levels > MAX_TOPIC_LEVELS) break;
  return levels > MAX_TOPIC_LEVELS ? `topic has more than ${MAX_TOPIC_LEVELS} levels` : undefined;
}

export function filterProblem(filter: string): string | undefined {
  if (filter.length === 0) return 'topic is empty';
  if (filter.includes('\u0000')) return 'topic holds a NUL character';
  const deep = levelsProblem(filter);
  if (deep) return deep;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return '"#" must be a whole level and the last one';
    if (l.includes('+') && l !== '+') return '"+" (STOMP "*") must be a whole level';
  }
  return undefined;
}

/** A topic someone publishes to: no wildcards, not empty. */
export function topicProblem(topic: string): string | undefined {
  if (topic.length === 0) return 'topic is empty';
  if (topic.includes('+') || topic.includes('#')) return 'a published topic cannot hold wildcards';
  if (topic.includes('\u0000')) return 'topic holds a NUL character';
  return levelsProblem(topic);
}

/** Whether a concrete topic matches a filter (used by tests and one-off checks; the router uses its trie). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A destination in Herald's STOMP-style syntax, parsed. */
export type ParsedDestination =
  | { kind: 'topic'; topic: string }
  | { kind: 'queue'; name: string }
  /** `who` is null for the caller's own mailbox (`/user/queue/x`). */
  | { kind: 'user'; who: string | null; name: string }
  | { kind: 'server'; destination: string };

/**
 * `/topic/a.b` → topic `a/b`; `/queue/jobs`; `/user/queue/x` (own mailbox);
 * `/user/{who}/queue/x`; `/app/…` and `/test` → server-side handlers.
 * Returns a reason string when the name fits none of these.
 */
export function parseDestination(dest: string): ParsedDestination | string {
  if (dest.startsWith('/topic/')) {
    const name = dest.slice(7);
    if (!name) return 'topic name is empty';
    const topic = topicFromDotted(name);
    const problem = filterProblem(topic);
    return problem ?? { kind: 'topic', topic };
  }
  if (dest.startsWith('/queue/')) {
    const name = dest.slice(7);
    return name ? { kind: 'queue', name } : 'queue name is empty';
  }
  if (dest.startsWith('/user/')) {
    const rest = dest.slice(6);
    if (rest.startsWith('queue/')) {
      const name = rest.slice(6);
      return name ? { kind: 'user', who: null, name } : 'user queue name is empty';
    }
    const slash = rest.indexOf('/queue/');
    if (slash <= 0) return 'user destinations look like /user/queue/{name} or /user/{user}/queue/{name}';
    const name = rest.slice(slash + 7);
    if (!name) return 'user queue name is empty';
    return { kind: 'user', who: rest.slice(0, slash), name };
  }
  if (dest.startsWith('/app/') || dest === '/test') return { kind: 'server', destination: dest };
  return `unknown destination "${dest.slice(0, 100)}": use /topic/…, /queue/…, /user/…/queue/…, /app/… or /test`;
}
