/**
 * Topic access rules for MQTT clients (like mosquitto's acl_file), read from
 * the JSON file named by `aclFile`:
 *
 *   [ { "effect": "allow" | "deny",
 *       "action": "publish" | "subscribe" | "all",
 *       "topic": "rooms/{app}/#",          // MQTT filter; {user}, {app}, {clientid} are filled in
 *       "who": "*" | "anonymous" | "user" | "role:admin" | "name:alice" } ]
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
import { filterProblem, topicMatches } from './destination.js';

export type AclAction = 'publish' | 'subscribe';

interface Rule {
  effect: 'allow' | 'deny';
  action: AclAction | 'all';
  topic: string;
  who: string;
}

export interface AclSubject {
  principal: Principal;
  clientId: string;
  anonymous: boolean;
}

/** Whether every topic `filter` matches is also matched by `rule` (wildcards in both). */
export function filterCovers(rule: string, filter: string): boolean {
  const r = rule.split('/');
  const f = filter.split('/');
  for (let i = 0; i < r.length; i++) {
    if (r[i] === '#') return true;
    if (i >= f.length || f[i] === '#') return false;
    if (r[i] !== '+' && (f[i] === '+' || r[i] !== f[i])) return false;
  }
  return r.length === f.length;
}

export class Acl {
  private constructor(private readonly rules: Rule[] | undefined) {}

  static load(path: string): Acl {
    if (!path) return new Acl(undefined);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new ConfigError(`aclFile ${path} cannot be read as JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed)) throw new ConfigError(`aclFile ${path} must hold a JSON array of rules`);
    const rules = parsed.map((r: unknown, i): Rule => {
      const o = r as Partial<Rule>;
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
      return { effect: o.effect, action: o.action, topic: o.topic, who };
    });
    return new Acl(rules);
  }

  private applies(rule: Rule, s: AclSubject): boolean {
    switch (rule.who) {
      case '*':
        return true;
      case 'anonymous':
        return s.anonymous;
      case 'user':
        return !s.anonymous;
      default:
        if (rule.who.startsWith('role:')) return !s.anonymous && s.principal.role === rule.who.slice(5);
        return !s.anonymous && s.principal.name === rule.who.slice(5);
    }
  }

  /** Whether the client may publish to `topic`, or subscribe to `filter`. */
  allows(s: AclSubject, action: AclAction, topicOrFilter: string): boolean {
    if (!this.rules) return !s.anonymous;
    const app = /^app:([^:]+):/.exec(s.principal.userId)?.[1] ?? '';
    for (const rule of this.rules) {
      if ((rule.action !== 'all' && rule.action !== action) || !this.applies(rule, s)) continue;
      const pattern = rule.topic.replace(/\{user\}/g, s.principal.name).replace(/\{app\}/g, app).replace(/\{clientid\}/g, s.clientId);
      const hit = action === 'publish' ? topicMatches(pattern, topicOrFilter) : filterCovers(pattern, topicOrFilter);
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
      if (this.decided.size >= 1000) this.decided.clear();
      this.decided.set(topic, ok);
    }
    return ok;
  }
}
