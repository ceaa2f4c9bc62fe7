/**
 * Topic access rules for MQTT clients (like mosquitto's acl_file), read from
 * the JSON file named by `aclFile`:
 *
 *   [ { "effect": "allow" | "deny",
 *       "action": "publish" | "subscribe" | "all",
 *       "topic": "rooms/{app}/#",          // MQTT filter; {user}, {app}, {clientid} are filled in
 *       "who": "*" | "anonymous" | "user" | "role:admin" | "name:alice" } ]
 *
 * A placeholder stands for exactly one topic level equal to the client's
 * value; a value that is empty or holds `/`, `+` or `#` fills in nothing and
 * the rule does not apply to that client (a client id `#` must not read
 * `devices/{clientid}/#` of every device: mosquitto CVE-2017-7650).
 *
 * The first rule that matches the client and the topic decides. Without a
 * file, authenticated clients may do anything and anonymous ones nothing;
 * with a file, what no rule allows is denied. The rules cover the topic space
 * whatever the protocol: MQTT topics, STOMP /topic/ destinations (a.b is a/b),
 * the JSON WebSocket's topics and HTTP publishes.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import type { Principal } from './auth.js';
import { filterProblem } from './destination.js';

export type AclAction = 'publish' | 'subscribe';

export interface AclRule {
  effect: 'allow' | 'deny';
  action: AclAction | 'all';
  topic: string;
  who: string;
}

interface ParsedRule extends AclRule {
  levels: RuleLevel[];
}

export interface AclSubject {
  principal: Principal;
  clientId: string;
  anonymous: boolean;
}

/** Whether every topic `filter` matches is also matched by `rule` (wildcards in both). */
export function filterCovers(rule: string, filter: string): boolean {
  return ruleCovers(parseRuleTopic(rule), NO_VALUES, filter);
}

/** A placeholder a rule's topic may hold; filled in from the client, never as a wildcard. */
type Placeholder = 'user' | 'app' | 'clientid';

/**
 * One level of a rule's topic: a literal (which may be `+` or `#`, the rule
 * writer's own wildcards), or a template holding placeholders such as
 * `{clientid}` or `dev-{user}`.
 */
type RuleLevel = string | { parts: (string | { placeholder: Placeholder })[] };

type PlaceholderValues = Readonly<Record<Placeholder, string | undefined>>;
const NO_VALUES: PlaceholderValues = { user: undefined, app: undefined, clientid: undefined };

function parseRuleTopic(topic: string): RuleLevel[] {
  return topic.split('/').map((level): RuleLevel => {
    if (!/\{(user|app|clientid)\}/.test(level)) return level;
    const parts: (string | { placeholder: Placeholder })[] = [];
    for (const piece of level.split(/(\{(?:user|app|clientid)\})/)) {
      if (piece === '') continue;
      const m = /^\{(user|app|clientid)\}$/.exec(piece);
      parts.push(m ? { placeholder: m[1] as Placeholder } : piece);
    }
    return { parts };
  });
}

/**
 * A client-supplied value (user name, app, client id) usable inside one topic
 * level: not empty, and free of the characters that would make it a wildcard
 * or a level separator. Anything else makes the rule not apply at all
 * (mosquitto CVE-2017-7650: a client id `#` must not read every device).
 */
function usableValue(v: string | undefined): v is string {
  return v !== undefined && v !== '' && !/[/+#\u0000]/.test(v);
}

/**
 * The exact text a template level stands for with these values, or
 * undefined when a value is unusable (then the level matches nothing).
 */
function fillLevel(level: Exclude<RuleLevel, string>, values: PlaceholderValues): string | undefined {
  let out = '';
  for (const part of level.parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    const v = values[part.placeholder];
    if (!usableValue(v)) return undefined;
    out += v;
  }
  return out;
}

/**
 * Whether the rule matches the concrete topic a client publishes to. A
 * placeholder level matches only a topic level equal to its filled-in text.
 */
function ruleMatchesTopic(rule: readonly RuleLevel[], values: PlaceholderValues, topic: string): boolean {
  const t = topic.split('/');
  // As in MQTT matching: a rule starting with a wildcard does not reach `$` topics.
  if (topic.startsWith('$') && (rule[0] === '+' || rule[0] === '#')) return false;
  for (let i = 0; i < rule.length; i++) {
    const r = rule[i]!;
    if (r === '#') return true;
    if (i >= t.length) return false;
    if (r === '+') continue;
    const want = typeof r === 'string' ? r : fillLevel(r, values);
    if (want === undefined || want !== t[i]) return false;
  }
  return rule.length === t.length;
}

/**
 * Whether every topic `filter` (a subscription, wildcards allowed) matches is
 * also matched by the rule. A placeholder level covers only the filter level
 * equal to its filled-in text, never a `+` or `#` in the filter.
 */
function ruleCovers(rule: readonly RuleLevel[], values: PlaceholderValues, filter: string): boolean {
  const f = filter.split('/');
  for (let i = 0; i < rule.length; i++) {
    const r = rule[i]!;
    if (r === '#') return true;
    if (i >= f.length || f[i] === '#') return false;
    if (r === '+') continue;
    if (f[i] === '+') return false;
    const want = typeof r === 'string' ? r : fillLevel(r, values);
    if (want === undefined || want !== f[i]) return false;
  }
  return rule.length === f.length;
}

/** A user of an MQTT app (token from the app's own user-token API), not a Herald user. */
function isAppUser(s: AclSubject): boolean {
  return s.principal.userId.startsWith('app:');
}

export class Acl {
  private constructor(private readonly rules: ParsedRule[] | undefined) {}

  /** Rules given directly (tests); the server reads them from `aclFile` with `load`. */
  static of(rules: readonly AclRule[]): Acl {
    return new Acl(rules.map((r) => ({ ...r, levels: parseRuleTopic(r.topic) })));
  }

  /** The rules in force, in the order they are tried (the console's Rules page); undefined without an aclFile. */
  listRules(): AclRule[] | undefined {
    return this.rules?.map(({ effect, action, topic, who }) => ({ effect, action, topic, who }));
  }

  static load(path: string): Acl {
    if (!path) return new Acl(undefined);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new ConfigError(`aclFile ${path} cannot be read as JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed)) throw new ConfigError(`aclFile ${path} must hold a JSON array of rules`);
    const rules = parsed.map((r: unknown, i): ParsedRule => {
      const o = r as Partial<AclRule>;
      const where = `aclFile ${path}, rule ${i + 1}`;
      if (o.effect !== 'allow' && o.effect !== 'deny') throw new ConfigError(`${where}: effect must be "allow" or "deny"`);
      if (o.action !== 'publish' && o.action !== 'subscribe' && o.action !== 'all') throw new ConfigError(`${where}: action must be "publish", "subscribe" or "all"`);
      if (typeof o.topic !== 'string' || filterProblem(o.topic.replace(/\{(user|app|clientid)\}/g, 'x'))) {
        throw new ConfigError(`${where}: topic must be an MQTT topic filter`);
      }
      const who = o.who ?? '*';
      if (!/^(\*|anonymous|user|role:(user|admin|service)|name:.+)$/.test(who)) {
        throw new ConfigError(`${where}: who must be "*", "anonymous", "user", "role:<role>" or "name:<user>"`);
      }
      return { effect: o.effect, action: o.action, topic: o.topic, who, levels: parseRuleTopic(o.topic) };
    });
    return new Acl(rules);
  }

  private applies(rule: AclRule, s: AclSubject): boolean {
    switch (rule.who) {
      case '*':
        return true;
      case 'anonymous':
        return s.anonymous;
      case 'user':
        return !s.anonymous;
      default:
        if (rule.who.startsWith('role:')) return !s.anonymous && s.principal.role === rule.who.slice(5);
        // `name:` names a Herald user: an app's user of the same name (anyone with the app's secret can mint one) is someone else.
        return !s.anonymous && !isAppUser(s) && s.principal.name === rule.who.slice(5);
    }
  }

  /**
   * Whether the client may publish to `topic`, or subscribe to `filter`.
   * Placeholders are matched level by level, never substituted into the
   * rule's text: a value holding `+`, `#` or `/` (or an empty one) makes
   * the rule not apply, so such a client gets no more than one whose value
   * names a level no topic has.
   */
  allows(s: AclSubject, action: AclAction, topicOrFilter: string): boolean {
    if (!this.rules) return !s.anonymous;
    const values: PlaceholderValues = {
      // {user} is a Herald user's name; an app's users are told apart by {app} and {clientid} instead.
      user: isAppUser(s) ? undefined : s.principal.name,
      app: /^app:([^:]+):/.exec(s.principal.userId)?.[1],
      clientid: s.clientId,
    };
    for (const rule of this.rules) {
      if ((rule.action !== 'all' && rule.action !== action) || !this.applies(rule, s)) continue;
      const hit = action === 'publish' ? ruleMatchesTopic(rule.levels, values, topicOrFilter) : ruleCovers(rule.levels, values, topicOrFilter);
      if (hit) return rule.effect === 'allow';
    }
    return false;
  }
}

/** The ACL subject of a session: its principal, with its device (MQTT client id) for {clientid}. */
export function sessionSubject(principal: Principal, device: string): AclSubject {
  return { principal, clientId: device, anonymous: principal.credential.kind === 'anonymous' };
}

/**
 * One connection's publish decisions, cached: a publisher usually sends to a
 * few topics many times, and the rules do not change while it is connected.
 */
export class PublishPermissions {
  private readonly decided = new Map<string, boolean>();

  constructor(
    private readonly acl: Acl,
    private readonly subject: () => AclSubject,
  ) {}

  allows(topic: string): boolean {
    let ok = this.decided.get(topic);
    if (ok === undefined) {
      ok = this.acl.allows(this.subject(), 'publish', topic);
      // Long topic names are decided afresh each time rather than kept: the cache stays small in bytes.
      if (topic.length <= 256) {
        if (this.decided.size >= 1000) this.decided.clear();
        this.decided.set(topic, ok);
      }
    }
    return ok;
  }
}
