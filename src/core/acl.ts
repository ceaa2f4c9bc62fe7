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
 * the JSON WebSocket's topics and HTTP publishes. Every refusal is counted
 * here (herald_acl_denials_total{protocol, action}), by the protocol the
 * subject names.
 *
 * `reload` (SIGHUP, POST /api/admin/reload) replaces the rules for every
 * connection's next publish and subscribe; subscriptions made before it
 * stay, as in mosquitto (docs/security.md#reloading-the-rules).
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import type { Principal } from './auth.js';
import { filterProblem } from './destination.js';
import type { ProtocolLabel } from './protocol-names.js';

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
  /** How the client asks (counted under it when refused). */
  protocol: ProtocolLabel;
}

/** The ACL hook as the rules see it (acl-hook.ts): a decision it still holds, or a question to it. */
export interface AclHookClient {
  lookup(s: AclSubject, action: AclAction, topicOrFilter: string): boolean | undefined;
  ask(s: AclSubject, action: AclAction, topicOrFilter: string): Promise<boolean>;
}

/** Told of every refusal (Metrics.aclDenied). */
export type DenialCounter = (protocol: ProtocolLabel, action: AclAction) => void;

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

/** The rules of an `aclFile`, checked whole; a ConfigError names the file, the rule and what is wrong. */
function parseFile(path: string): ParsedRule[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`aclFile ${path} cannot be read as JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw new ConfigError(`aclFile ${path} must hold a JSON array of rules`);
  return parsed.map((r: unknown, i): ParsedRule => {
    const o = (typeof r === 'object' && r !== null ? r : {}) as Partial<AclRule>;
    const where = `aclFile ${path}, rule ${i + 1}`;
    if (o.effect !== 'allow' && o.effect !== 'deny') throw new ConfigError(`${where}: effect must be "allow" or "deny"`);
    if (o.action !== 'publish' && o.action !== 'subscribe' && o.action !== 'all') throw new ConfigError(`${where}: action must be "publish", "subscribe" or "all"`);
    if (typeof o.topic !== 'string' || filterProblem(o.topic.replace(/\{(user|app|clientid)\}/g, 'x'))) {
      throw new ConfigError(`${where}: topic must be an MQTT topic filter`);
    }
    const who = o.who ?? '*';
    if (typeof who !== 'string' || !/^(\*|anonymous|user|role:(user|admin|service)|name:.+)$/.test(who)) {
      throw new ConfigError(`${where}: who must be "*", "anonymous", "user", "role:<role>" or "name:<user>"`);
    }
    return { effect: o.effect, action: o.action, topic: o.topic, who, levels: parseRuleTopic(o.topic) };
  });
}

/** A user of an MQTT app (token from the app's own user-token API), not a Herald user. */
function isAppUser(s: AclSubject): boolean {
  return s.principal.userId.startsWith('app:');
}

/** What reading `aclFile` again did: the new rules, or why the current ones stay (and how many they are). */
export type AclReload = { ok: true; rules: number } | { ok: false; reason: string; rules: number };

export class Acl {
  /** Bumped whenever the rules are replaced: cached decisions (PublishPermissions) compare it. */
  private version = 0;
  /** The application's ACL hook (aclHookUrl), asked about what the rules and the connect answer leave open. */
  hook: AclHookClient | undefined;

  private constructor(
    private rules: ParsedRule[] | undefined,
    private readonly denied: DenialCounter | undefined,
  ) {}

  /** Rules given directly (tests); the server reads them from `aclFile` with `load`. */
  static of(rules: readonly AclRule[], denied?: DenialCounter): Acl {
    return new Acl(
      rules.map((r) => ({ ...r, levels: parseRuleTopic(r.topic) })),
      denied,
    );
  }

  /** The rules in force, in the order they are tried (the console's Rules page); undefined without an aclFile. */
  listRules(): AclRule[] | undefined {
    return this.rules?.map(({ effect, action, topic, who }) => ({ effect, action, topic, who }));
  }

  /** The rules of `path` (none: the default rules); `denied` counts refusals. */
  static load(path: string, denied?: DenialCounter): Acl {
    return new Acl(path ? parseFile(path) : undefined, denied);
  }

  /** Changes each time the rules are replaced. */
  get generation(): number {
    return this.version;
  }

  /** How many rules are in force (0 without a file). */
  get size(): number {
    return this.rules?.length ?? 0;
  }

  /**
   * Reads `path` again (SIGHUP, POST /api/admin/reload). Rules that read and
   * check whole replace the current ones at once, for every connection's
   * next publish and subscribe; a file that does not (bad JSON, a bad rule)
   * changes nothing, and the answer says why.
   */
  reload(path: string): AclReload {
    let rules: ParsedRule[];
    try {
      rules = parseFile(path);
    } catch (err) {
      return { ok: false, reason: (err as Error).message, rules: this.size };
    }
    this.rules = rules;
    this.version++;
    return { ok: true, rules: rules.length };
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
   * names a level no topic has. A refusal is counted.
   */
  allows(s: AclSubject, action: AclAction, topicOrFilter: string): boolean {
    const ok = this.decides(s, action, topicOrFilter);
    if (!ok) this.denied?.(s.protocol, action);
    return ok;
  }

  /** Counts a refusal answered without asking again (PublishPermissions' cached decisions). */
  countDenial(s: AclSubject, action: AclAction): void {
    this.denied?.(s.protocol, action);
  }

  /**
   * The whole decision, counted when it refuses: the rules, then what the
   * connect hook's answer granted the session, then the ACL hook for what
   * both leave open (a Promise only when it must be asked).
   */
  check(s: AclSubject, action: AclAction, topicOrFilter: string): boolean | Promise<boolean> {
    const r = decideLayers(this, s, action, topicOrFilter);
    if (r === false) this.denied?.(s.protocol, action);
    else if (r instanceof Promise) {
      return r.then((ok) => {
        if (!ok) this.denied?.(s.protocol, action);
        return ok;
      });
    }
    return r;
  }

  /** The decision of `allows`, not counted. */
  decides(s: AclSubject, action: AclAction, topicOrFilter: string): boolean {
    const v = this.verdict(s, action, topicOrFilter);
    return v === 'allow' || (v === undefined && !this.rules);
  }

  /** Whether rules were read from a file (then what no rule allows is denied). */
  get hasRules(): boolean {
    return this.rules !== undefined;
  }

  /**
   * The rules' own word: the effect of the first rule that applies, `deny`
   * for anonymous clients without a file, or undefined when no rule says
   * (without a file: every authenticated client's request).
   */
  verdict(s: AclSubject, action: AclAction, topicOrFilter: string): 'allow' | 'deny' | undefined {
    if (!this.rules) return s.anonymous ? 'deny' : undefined;
    const values = valuesOf(s);
    for (const rule of this.rules) {
      if ((rule.action !== 'all' && rule.action !== action) || !this.applies(rule, s)) continue;
      const hit = action === 'publish' ? ruleMatchesTopic(rule.levels, values, topicOrFilter) : ruleCovers(rule.levels, values, topicOrFilter);
      if (hit) return rule.effect;
    }
    return undefined;
  }
}

function valuesOf(s: AclSubject): PlaceholderValues {
  return {
    // {user} is a Herald user's name; an app's users are told apart by {app} and {clientid} instead.
    user: isAppUser(s) ? undefined : s.principal.name,
    app: /^app:([^:]+):/.exec(s.principal.userId)?.[1],
    clientid: s.clientId,
  };
}

/**
 * The layers, in order: a rule that denies; the connect answer's grants for
 * this action, when it gave any (outside them: denied); a rule that allows,
 * or a grant that covers; then what is left open goes to the ACL hook, or
 * without one is allowed when there is no file (authenticated clients may do
 * anything) and denied when there is (what no rule allows).
 */
function decideLayers(acl: Acl, s: AclSubject, action: AclAction, topicOrFilter: string): boolean | Promise<boolean> {
  const v = acl.verdict(s, action, topicOrFilter);
  if (v === 'deny') return false;
  const granted = s.principal.grants?.[action];
  if (granted !== undefined && !grantsCover(granted, s, action, topicOrFilter)) return false;
  if (v === 'allow' || granted !== undefined) return true;
  if (!acl.hook) return !acl.hasRules;
  return acl.hook.lookup(s, action, topicOrFilter) ?? acl.hook.ask(s, action, topicOrFilter);
}

const parsedGrants = new WeakMap<readonly string[], RuleLevel[][]>();

/**
 * Whether the filters the connect hook granted (`{user}`, `{clientid}` as in
 * rules) cover this publish topic or subscription filter.
 */
export function grantsCover(grants: readonly string[], s: AclSubject, action: AclAction, topicOrFilter: string): boolean {
  let parsed = parsedGrants.get(grants);
  if (!parsed) {
    parsed = grants.map(parseRuleTopic);
    parsedGrants.set(grants, parsed);
  }
  const values = valuesOf(s);
  return parsed.some((levels) => (action === 'publish' ? ruleMatchesTopic(levels, values, topicOrFilter) : ruleCovers(levels, values, topicOrFilter)));
}

/** The ACL subject of a session: its principal, with its device (MQTT client id) for {clientid}. */
export function sessionSubject(principal: Principal, device: string, protocol: ProtocolLabel): AclSubject {
  return { principal, clientId: device, anonymous: principal.credential.kind === 'anonymous', protocol };
}

/**
 * One connection's publish decisions, cached: a publisher usually sends to a
 * few topics many times. A reload of the rules empties the cache, so the
 * next publish is decided by the new rules. Every refusal it answers is
 * counted, cached or not.
 */
export class PublishPermissions {
  private readonly decided = new Map<string, boolean>();
  private generation: number;

  constructor(
    private readonly acl: Acl,
    private readonly subject: () => AclSubject,
  ) {
    this.generation = acl.generation;
  }

  /** May the session publish to `topic`? A Promise only while the ACL hook is asked about a topic the first time. */
  check(topic: string): boolean | Promise<boolean> {
    if (this.generation !== this.acl.generation) {
      this.decided.clear();
      this.generation = this.acl.generation;
    }
    const known = this.decided.get(topic);
    if (known !== undefined) {
      if (!known) this.acl.countDenial(this.subject(), 'publish');
      return known;
    }
    const ok = this.acl.check(this.subject(), 'publish', topic);
    // Long topic names are decided afresh each time rather than kept: the cache stays small in bytes.
    // What the ACL hook decided is kept by the hook (for aclHookCacheSeconds), not here.
    if (typeof ok === 'boolean' && topic.length <= 256 && !this.acl.hook) {
      if (this.decided.size >= 1000) this.decided.clear();
      this.decided.set(topic, ok);
    }
    return ok;
  }

  /** May the session subscribe to `filter`? A Promise only while the ACL hook is asked. */
  checkSubscribe(filter: string): boolean | Promise<boolean> {
    return this.acl.check(this.subject(), 'subscribe', filter);
  }
}
