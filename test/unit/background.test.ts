/**
 * core/background.ts: a failing task is logged once per outage at warn
 * without a stack, its recovery once at info; it runs again at every tick,
 * never twice at once; and the process-level net counts what slips past.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { guardUnhandledRejections, logRejection, OutageLog, outageLog, repeat } from '../../src/core/background.js';
import { StoreUnavailableError } from '../../src/store/errors.js';

interface LogLine {
  level: number;
  msg: string;
  task?: string;
  err?: unknown;
}

function capturingLog(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(JSON.parse(chunk.toString()) as LogLine), done()) });
  return { log: pino({ level: 'debug' }, sink), lines };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hasStack = (l: LogLine): boolean => JSON.stringify(l).includes('    at ');
const down = (): StoreUnavailableError => new StoreUnavailableError('PostgreSQL is unreachable: connect ECONNREFUSED 127.0.0.1:5432');

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('OutageLog', () => {
  it('logs the first failure of an outage at warn without a stack, and its end once at info', () => {
    const { log, lines } = capturingLog();
    const outage = new OutageLog(log, 'the test sweep');
    outage.ok(); // nothing to say while it works
    assert.equal(lines.length, 0);
    for (let i = 0; i < 5; i++) outage.failed(down());
    assert.equal(outage.failing, true);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 40);
    assert.equal(lines[0]!.task, 'the test sweep');
    assert.equal(lines[0]!.err, 'PostgreSQL is unreachable: connect ECONNREFUSED 127.0.0.1:5432');
    assert.equal(hasStack(lines[0]!), false);
    outage.ok();
    outage.ok();
    assert.equal(outage.failing, false);
    assert.deepEqual(lines.slice(1).map((l) => [l.level, l.msg]), [[30, 'the test sweep works again']]);
    outage.failed('not even an Error');
    assert.equal(lines.length, 3, 'a new outage is logged again');
    assert.equal(lines[2]!.err, 'not even an Error');
  });

  it('is one per logger and task with outageLog', () => {
    const a = capturingLog();
    const b = capturingLog();
    assert.equal(outageLog(a.log, 'x'), outageLog(a.log, 'x'));
    assert.notEqual(outageLog(a.log, 'x'), outageLog(a.log, 'y'));
    assert.notEqual(outageLog(a.log, 'x'), outageLog(b.log, 'x'));
    outageLog(a.log, 'x').failed(down());
    outageLog(a.log, 'x').failed(down());
    assert.equal(a.lines.length, 1);
  });
});

describe('repeat', () => {
  it('runs the task at every tick through an outage, logging it once each way', async () => {
    const { log, lines } = capturingLog();
    let runs = 0;
    let failing = true;
    const timer = repeat(log, 'the test sweep', 10, async () => {
      runs++;
      if (failing) throw down();
    });
    try {
      await until(() => runs >= 5, 'five failed runs');
      assert.equal(lines.length, 1);
      assert.match(lines[0]!.msg, /^the test sweep failed; trying again at its next run$/);
      failing = false;
      await until(() => lines.length === 2, 'the recovery line');
      const at = runs;
      await until(() => runs >= at + 3, 'more runs');
      assert.deepEqual(lines.map((l) => l.level), [40, 30]);
    } finally {
      clearInterval(timer);
    }
    assert.equal(timer.hasRef(), false, 'the timer never keeps the process alive');
  });

  it('never runs a task twice at once, and counts a synchronous throw as a failure', async () => {
    const { log, lines } = capturingLog();
    let running = 0;
    let most = 0;
    let runs = 0;
    const slow = repeat(log, 'the slow task', 5, async () => {
      running++;
      most = Math.max(most, running);
      runs++;
      await sleep(30);
      running--;
    });
    const throwing = repeat(log, 'the throwing task', 5, () => {
      throw new Error('thrown before any promise');
    });
    try {
      await until(() => runs >= 3, 'three slow runs');
      assert.equal(most, 1);
      await until(() => lines.some((l) => l.task === 'the throwing task'), 'the throwing task');
      await sleep(30);
      assert.equal(lines.filter((l) => l.task === 'the throwing task').length, 1);
    } finally {
      clearInterval(slow);
      clearInterval(throwing);
    }
  });

  it('runs at once with now', async () => {
    const { log } = capturingLog();
    let runs = 0;
    const timer = repeat(log, 'the eager task', 60_000, async () => void runs++, { now: true });
    clearInterval(timer);
    await sleep(5);
    assert.equal(runs, 1);
  });
});

describe('logRejection', () => {
  it('logs the store being down at warn without a stack, and anything else at error with one', () => {
    const { log, lines } = capturingLog();
    logRejection(log, 'storing a retained will', { clientId: 'c1' })(down());
    logRejection(log, 'storing a retained will')(new TypeError('a bug'));
    assert.equal(lines[0]!.level, 40);
    assert.equal(hasStack(lines[0]!), false);
    assert.match(lines[0]!.msg, /storing a retained will failed: the store is unavailable/);
    assert.equal(lines[1]!.level, 50);
    assert.equal(hasStack(lines[1]!), true);
  });
});

describe('guardUnhandledRejections', () => {
  it('logs and counts a rejection nobody handled instead of ending the process, until removed', async () => {
    const { log, lines } = capturingLog();
    let count = 0;
    // The test runner's own listener would fail this test: it is set aside while the net alone catches.
    const runners = process.listeners('unhandledRejection');
    process.removeAllListeners('unhandledRejection');
    const unguard = guardUnhandledRejections(log, { inc: () => void count++ });
    try {
      void Promise.reject(new Error('nobody caught this'));
      await until(() => count === 1, 'the rejection to be counted');
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!.level, 50);
      assert.equal(lines[0]!.msg, 'unhandled rejection: nobody caught this');
    } finally {
      unguard();
      for (const l of runners) process.on('unhandledRejection', l);
    }
    assert.equal(process.listeners('unhandledRejection').length, runners.length, 'removed again');
  });
});
