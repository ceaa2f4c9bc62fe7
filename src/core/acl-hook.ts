/**
 * The ACL hook (`aclHookUrl`): the application decides each subscribe and
 * publish that the access rules and the connect answer leave open. Herald
 * POSTs `{"action":"subscribe","topic":"rooms/7/#","user":"alice","role":"user","clientId":"…","protocol":"mqtt-tcp"}`
 * and the back end answers `{"allow":true}` or `{"allow":false}`.
 *
 * - Decisions are cached per client (protocol, user and client id) and
 *   topic or filter for `aclHookCacheSeconds`; the same question asked
 *   while it is in flight shares the request.
 * - No answer within `aclHookTimeoutMs`, an error or an answer that is not
 *   the contract denies, and is not cached (the next attempt asks again).
 * - At most MAX_IN_FLIGHT questions wait on the back end; past that, denied
 *   at once.
 */
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { AclAction, AclHookClient, AclSubject } from './acl.js';
import { OutageLog } from './background.js';
import { askBackEnd, HookFailure, hookUrl } from './hook-http.js';

export interface AclHookOptions {
  url: string;
  timeoutMs: number;
  cacheSeconds: number;
  clock: Clock;
  log: Logger;
}

const MAX_IN_FLIGHT = 256;
const MAX_CACHED = 100_000;

function keyOf(s: AclSubject, action: AclAction, topic: string): string {
  return `${s.protocol}\0${s.principal.userId}\0${s.clientId}\0${action}\0${topic}`;
}

export class AclHook implements AclHookClient {
  private readonly cache = new Map<string, { until: number; allow: boolean }>();
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private readonly outage: OutageLog;
  /** Questions sent to the back end (tests read it). */
  requests = 0;

  constructor(private readonly options: AclHookOptions) {
    hookUrl('aclHookUrl', options.url);
    this.outage = new OutageLog(options.log, `asking the ACL hook at ${options.url}`);
  }

  lookup(s: AclSubject, action: AclAction, topic: string): boolean | undefined {
    const key = keyOf(s, action, topic);
    const hit = this.cache.get(key);
    if (!hit) return undefined;
    if (hit.until > this.options.clock.now()) return hit.allow;
    this.cache.delete(key);
    return undefined;
  }

  ask(s: AclSubject, action: AclAction, topic: string): Promise<boolean> {
    const key = keyOf(s, action, topic);
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    if (this.inFlight.size >= MAX_IN_FLIGHT) {
      this.options.log.warn({ url: this.options.url }, 'ACL hook: too many questions waiting; denied without asking');
      return Promise.resolve(false);
    }
    const question = this.post(s, action, topic)
      .then((allow) => {
        if (this.options.cacheSeconds > 0) {
          if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
          this.cache.set(key, { until: this.options.clock.now() + this.options.cacheSeconds * 1000, allow });
        }
        return allow;
      })
      .catch((err: unknown) => {
        if (!(err instanceof HookFailure)) throw err;
        this.outage.failed(err);
        return false;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, question);
    return question;
  }

  private async post(s: AclSubject, action: AclAction, topic: string): Promise<boolean> {
    this.requests++;
    const answer = await askBackEnd(
      this.options.url,
      { action, topic, user: s.principal.name, role: s.principal.role, clientId: s.clientId, protocol: s.protocol, anonymous: s.anonymous },
      this.options.timeoutMs,
    );
    const allow = answer !== null && typeof answer === 'object' ? (answer as { allow?: unknown }).allow : undefined;
    if (typeof allow !== 'boolean') throw new HookFailure('the answer must be {"allow":true} or {"allow":false}');
    this.outage.ok();
    return allow;
  }
}
