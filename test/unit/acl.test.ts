/**
 * ACL placeholders are matched level by level, never pasted into the rule:
 * a client id, user name or app holding `+`, `#` or `/` must not turn a
 * rule about its own topics into one about everyone's (mosquitto
 * CVE-2017-7650).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Acl, PublishPermissions, filterCovers, type AclAction, type AclRule } from '../../src/core/acl.js';
import type { Principal } from '../../src/core/auth.js';
import { topicFromDotted } from '../../src/core/destination.js';

function subject(name: string, clientId: string, userId = 'u-' + name) {
  const principal: Principal = { userId, name, role: 'user', credential: { kind: 'password' } };
  return { principal, clientId, anonymous: false, protocol: 'mqtt-tcp' as const };
}

const rules: AclRule[] = [
  { effect: 'allow', action: 'all', topic: 'devices/{clientid}/#', who: 'user' },
  { effect: 'allow', action: 'all', topic: 'users/{user}/inbox', who: 'user' },
  { effect: 'allow', action: 'all', topic: 'rooms/{app}/+', who: 'user' },
  { effect: 'allow', action: 'subscribe', topic: 'mixed/dev-{clientid}-{user}/state', who: 'user' },
  { effect: 'allow', action: 'all', topic: 'public/#', who: 'user' },
];
const acl = Acl.of(rules);
const SECRET = 'devices/victim/dev/secret';

describe('ACL placeholders: ordinary clients', () => {
  it('give a client its own device, inbox and app room, publish and subscribe', () => {
    const me = subject('alice', 'phone-1');
    assert.equal(acl.allows(me, 'publish', 'devices/phone-1/state'), true);
    assert.equal(acl.allows(me, 'subscribe', 'devices/phone-1/#'), true);
    assert.equal(acl.allows(me, 'subscribe', 'devices/phone-1/+/x'), true);
    assert.equal(acl.allows(me, 'publish', 'users/alice/inbox'), true);
    assert.equal(acl.allows(me, 'subscribe', 'users/alice/inbox'), true);
    assert.equal(acl.allows(me, 'subscribe', 'mixed/dev-phone-1-alice/state'), true);
    const appUser = subject('bob', 'c1', 'app:shop:bob');
    assert.equal(acl.allows(appUser, 'publish', 'rooms/shop/lobby'), true);
    assert.equal(acl.allows(appUser, 'subscribe', 'rooms/shop/+'), true);
  });

  it("refuse another client's device, inbox and app room", () => {
    const me = subject('alice', 'phone-1');
    assert.equal(acl.allows(me, 'publish', 'devices/phone-2/state'), false);
    assert.equal(acl.allows(me, 'subscribe', 'devices/+/state'), false);
    assert.equal(acl.allows(me, 'subscribe', 'devices/#'), false);
    assert.equal(acl.allows(me, 'subscribe', 'users/+/inbox'), false);
    assert.equal(acl.allows(me, 'subscribe', 'users/bob/inbox'), false);
    assert.equal(acl.allows(me, 'subscribe', 'mixed/dev-phone-1-bob/state'), false);
    assert.equal(acl.allows(subject('bob', 'c1', 'app:shop:bob'), 'subscribe', 'rooms/other/lobby'), false);
  });

  it('still treat the wildcards the rule writer wrote as wildcards', () => {
    const me = subject('alice', 'phone-1');
    assert.equal(acl.allows(me, 'subscribe', 'public/#'), true);
    assert.equal(acl.allows(me, 'subscribe', 'public/+/news'), true);
    assert.equal(filterCovers('a/+/c', 'a/b/c'), true);
    assert.equal(filterCovers('a/+/c', 'a/+/c'), true);
    assert.equal(filterCovers('a/b/c', 'a/+/c'), false);
    assert.equal(filterCovers('a/#', 'a'), true, 'a/# also matches its parent a');
    assert.equal(filterCovers('a/b', 'a/#'), false);
    assert.equal(filterCovers('#', 'x/y'), true);
  });
});

describe('ACL placeholders: attack values never widen a rule', () => {
  const attacks: { what: string; s: ReturnType<typeof subject> }[] = [
    { what: 'MQTT client id "#"', s: subject('mallory', '#') },
    { what: 'MQTT client id "+"', s: subject('mallory', '+') },
    { what: 'client id "victim/dev"', s: subject('mallory', 'victim/dev') },
    { what: 'client id "victim/+"', s: subject('mallory', 'victim/+') },
    { what: 'STOMP ?device=%23 (device "#")', s: subject('mallory', decodeURIComponent('%23')) },
    { what: 'empty client id', s: subject('mallory', '') },
    { what: 'JWT name claim "#"', s: subject('#', 'c') },
    { what: 'app user named "+"', s: subject('+', 'c', 'app:shop:+') },
  ];
  for (const { what, s } of attacks) {
    it(`${what}: cannot read or write ${SECRET} or anyone's inbox`, () => {
      assert.equal(acl.allows(s, 'subscribe', SECRET), false, 'subscribe to the secret');
      assert.equal(acl.allows(s, 'publish', SECRET), false, 'publish to the secret');
      assert.equal(acl.allows(s, 'subscribe', 'devices/#'), false);
      assert.equal(acl.allows(s, 'subscribe', 'devices/+/dev/secret'), false);
      assert.equal(acl.allows(s, 'subscribe', 'users/victim/inbox'), false);
      assert.equal(acl.allows(s, 'subscribe', 'users/+/inbox'), false);
      assert.equal(acl.allows(s, 'subscribe', 'users/#'), false);
      assert.equal(acl.allows(s, 'subscribe', 'mixed/dev-victim-victim/state'), false);
    });
  }

  it('an app named with a wildcard or a slash gets no room of another app', () => {
    for (const app of ['#', '+', '']) {
      const s = subject('bob', 'c', `app:${app}:bob`);
      assert.equal(acl.allows(s, 'subscribe', 'rooms/shop/lobby'), false, `app ${JSON.stringify(app)}`);
      assert.equal(acl.allows(s, 'subscribe', 'rooms/+/lobby'), false, `app ${JSON.stringify(app)}`);
      assert.equal(acl.allows(s, 'publish', 'rooms/shop/lobby'), false, `app ${JSON.stringify(app)}`);
    }
  });

  it("an app's user of the same name as a Herald user gets neither its {user} topics nor its name: rules", () => {
    const named = Acl.of([
      { effect: 'allow', action: 'all', topic: 'vip/#', who: 'name:bobby' },
      { effect: 'allow', action: 'all', topic: 'home/{user}/#', who: 'user' },
    ]);
    const herald = subject('bobby', 'c1');
    const impostor = subject('bobby', 'c1', 'app:shop:bobby');
    assert.equal(named.allows(herald, 'subscribe', 'vip/secret'), true);
    assert.equal(named.allows(herald, 'publish', 'home/bobby/door'), true);
    assert.equal(named.allows(impostor, 'subscribe', 'vip/secret'), false);
    assert.equal(named.allows(impostor, 'subscribe', 'home/bobby/diary'), false);
    assert.equal(named.allows(impostor, 'publish', 'home/bobby/door'), false);
  });

  it('a value equal to a wildcard matches only that literal level where the topic has one', () => {
    // The MQTT topic `devices/*/x` has a literal `*` level (STOMP cannot write it; its `*` is `+`).
    const star = subject('mallory', '*');
    assert.equal(acl.allows(star, 'publish', 'devices/*/x'), true);
    assert.equal(acl.allows(star, 'subscribe', topicFromDotted('devices.*.x')), false, 'STOMP * is a wildcard, not the value');
    assert.equal(acl.allows(star, 'subscribe', SECRET), false);
    // A dotted STOMP device is one level: it reaches only the topic level with that exact text.
    const dotted = subject('mallory', 'victim.dev');
    assert.equal(acl.allows(dotted, 'subscribe', SECRET), false);
    assert.equal(acl.allows(dotted, 'subscribe', topicFromDotted('devices.victim/dev.secret')), true, 'STOMP a/b is the MQTT level a.b');
  });

  it('a deny with a placeholder does not turn into a deny for everyone, nor an allow', () => {
    const deny = Acl.of([
      { effect: 'deny', action: 'all', topic: 'users/{user}/private', who: 'user' },
      { effect: 'allow', action: 'subscribe', topic: 'users/+/profile', who: 'user' },
    ]);
    const plus = subject('+', 'c');
    assert.equal(deny.allows(plus, 'subscribe', 'users/alice/private'), false, 'nothing allows it');
    assert.equal(deny.allows(subject('bob', 'c'), 'subscribe', 'users/alice/profile'), true);
    assert.equal(deny.allows(plus, 'subscribe', 'users/alice/profile'), true, 'the deny did not swallow the allow');
  });
});

describe('ACL refusals are counted where they are decided', () => {
  it('counts each refusal once under the subject\'s protocol, cached publish decisions too, and never an allow', () => {
    const denied: string[] = [];
    const counted = Acl.of(rules, (protocol, action: AclAction) => denied.push(`${protocol} ${action}`));
    const me = { ...subject('alice', 'phone-1'), protocol: 'stomp-tcp' as const };
    assert.equal(counted.allows(me, 'subscribe', 'users/alice/inbox'), true);
    assert.equal(counted.allows(me, 'subscribe', 'users/bob/inbox'), false);
    assert.equal(counted.decides(me, 'subscribe', 'users/bob/inbox'), false, 'the decision alone');
    const publishes = new PublishPermissions(counted, () => me);
    assert.equal(publishes.check('public/x'), true);
    assert.equal(publishes.check(SECRET), false);
    assert.equal(publishes.check(SECRET), false, 'the second answer comes from the cache');
    assert.deepEqual(denied, ['stomp-tcp subscribe', 'stomp-tcp publish', 'stomp-tcp publish']);
  });
});

describe('the decision layers: rules, the connect answer\'s grants, then the ACL hook for what is left open', () => {
  /** An ACL hook that records the questions and answers from a table (unknown: denied). */
  function fakeHook(answers: Record<string, boolean>) {
    const asked: string[] = [];
    return {
      asked,
      lookup: () => undefined,
      ask: async (_s: unknown, action: AclAction, topic: string) => {
        asked.push(`${action} ${topic}`);
        return answers[`${action} ${topic}`] ?? false;
      },
    };
  }
  const withGrants = (grants: { publish?: string[]; subscribe?: string[] }) => {
    const s = subject('alice', 'phone-1');
    return { ...s, principal: { ...s.principal, grants } };
  };

  it('without a file or a hook, grants alone limit the session (and {user} fills in)', () => {
    const open = Acl.of([]);
    const noFile = Acl.load('');
    const s = withGrants({ publish: ['users/{user}/out'], subscribe: ['rooms/#'] });
    assert.equal(noFile.check(s, 'publish', 'users/alice/out'), true);
    assert.equal(noFile.check(s, 'publish', 'users/bob/out'), false, 'outside the grants');
    assert.equal(noFile.check(s, 'subscribe', 'rooms/7/+'), true);
    assert.equal(noFile.check(s, 'subscribe', '#'), false, 'wider than the grant');
    assert.equal(noFile.check(subject('bob', 'x'), 'publish', 'anything'), true, 'no grants, no file: authenticated may do anything');
    assert.equal(open.check(subject('bob', 'x'), 'publish', 'anything'), false, 'a file (here empty) denies what no rule allows');
  });

  it('a rule that denies wins over grants and the hook; a rule that allows is not asked about; grants are not widened by rules', async () => {
    const acl = Acl.of([
      { effect: 'deny', action: 'all', topic: 'secret/#', who: '*' },
      { effect: 'allow', action: 'all', topic: 'public/#', who: 'user' },
    ]);
    const hook = fakeHook({ 'publish open/yes': true });
    acl.hook = hook;
    const s = subject('alice', 'phone-1');
    assert.equal(acl.check(s, 'publish', 'secret/x'), false);
    assert.equal(acl.check(s, 'publish', 'public/x'), true);
    assert.equal(await acl.check(s, 'publish', 'open/yes'), true);
    assert.equal(await acl.check(s, 'publish', 'open/no'), false);
    assert.deepEqual(hook.asked, ['publish open/yes', 'publish open/no'], 'only what the rules left open');
    const limited = withGrants({ publish: ['open/#'] });
    assert.equal(acl.check(limited, 'publish', 'public/x'), false, 'the grants limit even what a rule allows');
    assert.equal(acl.check(limited, 'publish', 'open/no'), true, 'a grant decides: the hook is not asked');
    assert.equal(hook.asked.length, 2);
  });

  it('PublishPermissions keeps the hook\'s answers out of its own cache, and counts hook refusals', async () => {
    const denied: string[] = [];
    const acl = Acl.of([], (p, a) => denied.push(`${p} ${a}`));
    const answers: Record<string, boolean> = { 'publish t/1': true };
    const hook = fakeHook(answers);
    acl.hook = hook;
    const p = new PublishPermissions(acl, () => subject('alice', 'phone-1'));
    assert.equal(await p.check('t/1'), true);
    answers['publish t/1'] = false;
    assert.equal(await p.check('t/1'), false, 'asked again: the hook keeps its own cache, with its own time limit');
    assert.equal(await p.checkSubscribe('t/#'), false);
    assert.deepEqual(denied, ['mqtt-tcp publish', 'mqtt-tcp subscribe']);
  });
});
