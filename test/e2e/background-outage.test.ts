/**
 * Background work while PostgreSQL is down: the sweeps (idle threads, message
 * retention, dead tokens) fail, say so once each at warn, try again at every
 * tick, and say once that they work again; nothing rejects unhandled, the
 * process stays up, and /readyz, polled all along, logs its two transitions
 * and nothing per poll. The node runs on a PostgreSQL of the test's own, so
 * the test can stop it.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { Clock } from '../../src/clock.js';
import { guardUnhandledRejections } from '../../src/core/background.js';
import { postgresServerMissing, privatePostgres } from '../helpers/services.js';
import { api, login, startServer, tempDir } from '../helpers/server.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';

const skip = postgresServerMissing();

/** The tasks that need the store, as their OutageLog names them. */
const SWEEPS = ['the idle-thread sweep', 'the message retention sweep', 'the token sweep'];

interface LogLine {
  level: number;
  msg: string;
  task?: string;
  cause?: string;
  ready?: boolean;
  err?: unknown;
  stack?: unknown;
}

function capturingLog(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(JSON.parse(chunk.toString()) as LogLine), done()) });
  return { log: pino({ level: 'info' }, sink), lines };
}

async function untilTrue(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The store calls each sweep makes, as herald_store_seconds counts them (failed calls too). */
const SWEEP_CALLS = ['idleThreads', 'pruneMessages', 'deleteDeadTokens'];

async function storeCalls(base: string): Promise<Map<string, number>> {
  const text = await (await fetch(base + '/metrics')).text();
  const counts = new Map<string, number>();
  for (const m of text.matchAll(/^herald_store_seconds_count\{op="(\w+)"\} (\d+)$/gm)) counts.set(m[1]!, Number(m[2]));
  return counts;
}

const WARN = 40;
const ERROR = 50;
const hasStack = (l: LogLine): boolean => JSON.stringify(l).includes('    at ');

describe('background tasks while PostgreSQL is down', { skip }, () => {
  it('log each failure once, retry, keep the process up, and log readiness per transition', async () => {
    const pg = await privatePostgres();
    await pg.start();
    const { log, lines } = capturingLog();
    // Time as the server sees it, moved on during the outage so that the token purge (once a minute) is due
    // and the watched token below looks idle: both need the store then.
    let skew = 0;
    const clock: Clock = { now: () => Date.now() + skew };
    const node = await startServer(
      { databaseUrl: pg.url, threadIdleCloseSeconds: 1, messageRetentionSweepSeconds: 1, tokenSweepMs: 200, tokenIdleSeconds: 60, sysIntervalSeconds: 1 },
      clock,
      tempDir(),
      log,
    );
    const unguard = guardUnhandledRejections(node.server.ctx.log, node.server.ctx.metrics.unhandledRejections);
    try {
      const token = await login(node.url);
      const watched = await RawStomp.tcp(node.server.address('stomp').port);
      assert.equal((await watched.connect({ passcode: token })).command, 'CONNECTED');

      // Counted from before the stop: a sweep may meet the dying server while pg.stop() is still waiting.
      const downFrom = lines.length;
      await pg.stop();
      const callsBefore = await storeCalls(node.url);
      skew = 61_000;
      // Long enough for every sweep to run at least twice (the slowest runs every second), polling /readyz all along.
      const until = Date.now() + 3500;
      let polls = 0;
      while (Date.now() < until) {
        const ready = await api(node.url, 'GET', '/readyz');
        assert.equal(ready.status, 503);
        assert.match(ready.body.message, /store \(postgres\) is unreachable/);
        polls++;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(polls >= 20, `polled /readyz ${polls} times`);
      const callsAfter = await storeCalls(node.url);
      for (const op of SWEEP_CALLS) {
        const runs = (callsAfter.get(op) ?? 0) - (callsBefore.get(op) ?? 0);
        assert.ok(runs >= 2, `${op} was tried ${runs} times while the store was down`);
      }
      assert.equal(watched.closed, false, 'a token that only looks dead is not ended while the store cannot be asked');

      await pg.start();
      await untilTrue(async () => (await api(node.url, 'GET', '/readyz')).status === 200, '/readyz to recover');
      await untilTrue(() => SWEEPS.every((task) => lines.some((l) => l.task === task && /works again/.test(l.msg))), 'every sweep to work again');

      // Each sweep failed, and said so once, at warn, without a stack. (Counted up to now: on a busy machine a
      // store call made just before PostgreSQL came back may fail and log after the polling window.)
      const whileDown = lines.slice(downFrom);
      for (const task of SWEEPS) {
        const failed = whileDown.filter((l) => l.task === task && /failed/.test(l.msg));
        assert.equal(failed.length, 1, `${task}: ${JSON.stringify(failed)}`);
        assert.equal(failed[0]!.level, WARN);
        assert.equal(hasStack(failed[0]!), false, JSON.stringify(failed[0]));
        assert.equal(lines.filter((l) => l.task === task && /works again/.test(l.msg)).length, 1, `${task} recovered once`);
      }
      // No task logged more than one line per outage.
      const perTask = new Map<string, number>();
      for (const l of lines) if (l.task && /failed/.test(l.msg)) perTask.set(l.task, (perTask.get(l.task) ?? 0) + 1);
      for (const [task, n] of perTask) assert.equal(n, 1, `${task} logged ${n} failures`);

      // Readiness: one warn when it turned bad, naming the store, one info when it came back; no line per poll.
      const readiness = lines.filter((l) => l.ready !== undefined);
      assert.deepEqual(
        readiness.map((l) => [l.level, l.ready, l.cause]),
        [
          [WARN, false, 'store'],
          [30, true, undefined],
        ],
        JSON.stringify(readiness),
      );
      assert.match(readiness[0]!.msg, /store \(postgres\) is unreachable/);
      assert.equal(lines.filter((l) => /readyz/.test(JSON.stringify(l))).length, 0, 'no line about a /readyz request');

      // Nothing at error level, nothing with a stack, no unhandled rejection.
      assert.deepEqual(lines.filter((l) => l.level >= ERROR), []);
      assert.deepEqual(lines.filter(hasStack), []);
      assert.equal(lines.filter((l) => /unhandled rejection/.test(l.msg)).length, 0);
      const metrics = await (await fetch(node.url + '/metrics')).text();
      assert.match(metrics, /^herald_unhandled_rejections_total 0$/m);

      // The process is up and serves: a stored message goes through with its RECEIPT.
      const fresh = await login(node.url);
      const c = await RawStomp.tcp(node.server.address('stomp').port);
      assert.equal((await c.connect({ passcode: fresh })).command, 'CONNECTED');
      c.send('SEND\ndestination:/queue/after-outage\nreceipt:r1\n\nhello\0');
      assert.equal(frameHeader(await c.next('RECEIPT'), 'receipt-id'), 'r1');
      // Once the store answers, the idle token is found dead after all, and its session is told so.
      const ended = await watched.next('ERROR');
      assert.match(frameHeader(ended, 'message') ?? '', /expired/);
      c.close();
    } finally {
      unguard();
      await node.stop();
      await pg.destroy();
    }
  });
});
