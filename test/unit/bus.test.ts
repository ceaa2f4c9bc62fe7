import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { globEscape, globMatch, MemoryBus, MemoryHub } from '../../src/bus/bus.js';
import { RedisBus } from '../../src/bus/redis-bus.js';
import { createLogger } from '../../src/log.js';
import { busSuite } from '../helpers/bus-suite.js';
import { freshClusterName, REDIS_URL, servicesMissing } from '../helpers/services.js';
import { loadConfig } from '../../src/config.js';

let hub = new MemoryHub();
busSuite('memory', {
  async cluster(n) {
    hub = new MemoryHub();
    return Array.from({ length: n }, (_, i) => new MemoryBus(`m${i}`, hub));
  },
  async sameName(nodeId) {
    return new MemoryBus(nodeId, hub);
  },
});

const log = createLogger(loadConfig({ env: { HERALD_LOG_LEVEL: 'silent' } }));
let prefix = '';
busSuite(
  'redis',
  {
    async cluster(n) {
      prefix = freshClusterName();
      return Array.from({ length: n }, (_, i) => new RedisBus({ url: REDIS_URL!, prefix, nodeId: `r${i}`, log }));
    },
    async sameName(nodeId) {
      return new RedisBus({ url: REDIS_URL!, prefix, nodeId, log });
    },
  },
  servicesMissing('redis'),
);

describe('glob patterns', () => {
  it('match as Redis does for the patterns Herald makes', () => {
    assert.equal(globMatch('t:a/*', 't:a/b/c'), true);
    assert.equal(globMatch('t:a/*', 't:a'), false);
    assert.equal(globMatch('t:*/x', 't:a/b/x'), true);
    assert.equal(globMatch('t:' + globEscape('a*b') + '/*', 't:a*b/c'), true);
    assert.equal(globMatch('t:' + globEscape('a*b') + '/*', 't:axxb/c'), false);
    assert.equal(globMatch('t:' + globEscape('[x]?'), 't:[x]?'), true);
    assert.equal(globMatch('t:' + globEscape('[x]?'), 't:[x]a'), false);
    assert.equal(globMatch('*', ''), true);
  });
});

describe('memory bus while down', () => {
  it('drops and counts instead of throwing', () => {
    const hub = new MemoryHub();
    const a = new MemoryBus('a', hub);
    hub.up = false;
    a.publish('t:x', Buffer.from('1'));
    assert.equal(a.dropped, 1);
    assert.equal(a.connected, false);
  });
});
