/** Topic and filter checks shared by every protocol: levels are bounded, so matching stays cheap. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filterProblem, levelsProblem, MAX_TOPIC_LEVELS, topicProblem } from '../../src/core/destination.js';

describe('topic levels', () => {
  const levels = (n: number, leaf = 'x'): string => Array.from({ length: n }, () => leaf).join('/');

  it(`accepts ${MAX_TOPIC_LEVELS} levels and refuses one more, for topics and filters alike`, () => {
    assert.equal(topicProblem(levels(MAX_TOPIC_LEVELS)), undefined);
    assert.equal(filterProblem(levels(MAX_TOPIC_LEVELS - 1) + '/#'), undefined);
    assert.match(topicProblem(levels(MAX_TOPIC_LEVELS + 1)) ?? '', /more than 200 levels/);
    assert.match(filterProblem(levels(MAX_TOPIC_LEVELS, '+') + '/#') ?? '', /more than 200 levels/);
    assert.match(levelsProblem('/'.repeat(20_000)) ?? '', /more than 200 levels/);
  });

});
