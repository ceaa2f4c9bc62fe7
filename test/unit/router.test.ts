import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { filterProblem, parseDestination, topicFromDotted, topicMatches, topicToDotted } from '../../src/core/destination.js';
import { TopicIndex } from '../../src/core/router.js';

describe('destinations', () => {
  it('maps STOMP dotted topics to MQTT levels and back, swapping / and .', () => {
    assert.equal(topicFromDotted('a.b.c'), 'a/b/c');
    assert.equal(topicFromDotted('a.*.#'), 'a/+/#');
    assert.equal(topicFromDotted('org/x.1'), 'org.x/1');
    assert.equal(topicToDotted('a/b.c'), 'a.b/c');
    fc.assert(fc.property(fc.array(fc.stringMatching(/^[a-z./]{1,5}$/), { minLength: 1, maxLength: 5 }), (levels) => {
      const key = levels.map((l) => l.replaceAll('/', '.')).join('/');
      assert.equal(topicFromDotted(topicToDotted(key)), key);
    }));
  });

  it('parses the destination kinds Herald knows', () => {
    assert.deepEqual(parseDestination('/topic/a.b'), { kind: 'topic', topic: 'a/b' });
    assert.deepEqual(parseDestination('/queue/jobs'), { kind: 'queue', name: 'jobs' });
    assert.deepEqual(parseDestination('/user/queue/strm'), { kind: 'user', who: null, name: 'strm' });
    assert.deepEqual(parseDestination('/user/Ge4E1xNHSfW8NYa0VJe48A/queue/strm'), { kind: 'user', who: 'Ge4E1xNHSfW8NYa0VJe48A', name: 'strm' });
    assert.deepEqual(parseDestination('/app/chat.1'), { kind: 'server', destination: '/app/chat.1' });
    assert.deepEqual(parseDestination('/test'), { kind: 'server', destination: '/test' });
    assert.match(parseDestination('/elsewhere') as string, /unknown destination/);
    assert.match(parseDestination('/topic/') as string, /empty/);
    assert.match(parseDestination('/topic/a.#.b') as string, /"#" must be/);
    assert.match(parseDestination('/user/x/topic/y') as string, /user destinations look like/);
  });

  it('checks filters', () => {
    assert.equal(filterProblem('a/+/#'), undefined);
    assert.match(filterProblem('a/b#')!, /"#"/);
    assert.match(filterProblem('a+/b')!, /"\+"/);
  });
});

describe('TopicIndex', () => {
  it('matches exact, + and # filters, and a/# matches a', () => {
    const idx = new TopicIndex<string>();
    for (const f of ['a/b', 'a/+', 'a/#', '#', '+/b', 'x/y/z', '+/+/+']) idx.add(f, f);
    const got = (t: string) => {
      const out: string[] = [];
      idx.match(t, (s) => out.push(s));
      return out.sort();
    };
    assert.deepEqual(got('a/b'), ['#', '+/b', 'a/#', 'a/+', 'a/b'].sort());
    assert.deepEqual(got('a'), ['#', 'a/#'].sort());
    assert.deepEqual(got('x/y/z'), ['#', '+/+/+', 'x/y/z'].sort());
    assert.deepEqual(got('$SYS/b'), [], '$ topics are not matched by leading wildcards');
    idx.add('$SYS/#', '$SYS/#');
    assert.deepEqual(got('$SYS/b'), ['$SYS/#']);
  });

  it('removes subscriptions and prunes', () => {
    const idx = new TopicIndex<string>();
    idx.add('a/+/c', 's1');
    idx.add('a/b', 's2');
    idx.remove('a/+/c', 's1');
    idx.remove('a/b', 's2');
    idx.remove('not/there', 's3');
    assert.equal(idx.size, 0);
    let n = 0;
    idx.match('a/x/c', () => n++);
    assert.equal(n, 0);
  });

  it('agrees with the reference matcher on random filters and topics', () => {
    const level = fc.constantFrom('a', 'b', 'c', '$s');
    const topic = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join('/'));
    const filter = fc
      .tuple(fc.array(fc.constantFrom('a', 'b', 'c', '+', '$s'), { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([l, hash]) => (hash ? [...l, '#'] : l).join('/'));
    fc.assert(
      fc.property(fc.uniqueArray(filter, { maxLength: 12 }), fc.array(topic, { maxLength: 10 }), (filters, topics) => {
        const idx = new TopicIndex<string>();
        for (const f of filters) idx.add(f, f);
        for (const t of topics) {
          const got: string[] = [];
          idx.match(t, (s) => got.push(s));
          const want = filters.filter((f) => topicMatches(f, t));
          assert.deepEqual(got.sort(), want.sort(), `topic ${t}`);
        }
      }),
      { numRuns: 300 },
    );
  });
});
