/** The open-file limit at start: read, raised, and judged against the listeners' connection caps. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';
import { Writable } from 'node:stream';
import { checkOpenFiles, judgeOpenFiles, listenerCaps, parseOpenFileLimit, raiseOpenFileLimit, RESERVED_DESCRIPTORS } from '../../src/transports/open-files.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 20000                files
Max locked memory         8388608              8388608              bytes
`;

function capture(): { log: Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      done();
    },
  });
  const log: Logger = pino({ level: 'info' }, stream);
  return { log, lines };
}

describe('open files', () => {
  it('reads the soft and hard limit from /proc/<pid>/limits text', () => {
    assert.deepEqual(parseOpenFileLimit(LIMITS), { soft: 1024, hard: 20000 });
    assert.deepEqual(parseOpenFileLimit(LIMITS.replace('20000', 'unlimited')), { soft: 1024, hard: Infinity });
    assert.equal(parseOpenFileLimit('no such line'), undefined);
  });

  it('this process runs with its soft limit at the hard one (Node raises it; Herald would with prlimit)', { skip: process.platform !== 'linux' }, () => {
    const limit = raiseOpenFileLimit();
    assert.ok(limit);
    assert.equal(limit.soft, limit.hard);
  });

  it('judges the caps of the bound listeners against what the limit allows', () => {
    const limit = { soft: 20000, hard: 20000 };
    const allows = 20000 - RESERVED_DESCRIPTORS;
    assert.deepEqual(judgeOpenFiles(limit, [{ name: 'mqtt', maxConnections: 10000 }, { name: 'http', maxConnections: 5000 }]), { kind: 'enough', allows, needed: 15000 });
    assert.deepEqual(judgeOpenFiles(limit, [{ name: 'mqtt', maxConnections: 100000 }, { name: 'http', maxConnections: 5 }]), { kind: 'too_low', allows, needed: 100005 });
    assert.deepEqual(judgeOpenFiles(limit, [{ name: 'mqtt', maxConnections: 100000 }, { name: 'http', maxConnections: 0 }]), { kind: 'uncapped', allows });
    const config = { httpMaxConnections: 7, httpsMaxConnections: 0, stompMaxConnections: 8, stompTlsMaxConnections: 0, mqttMaxConnections: 9, mqttTlsMaxConnections: 0 };
    assert.deepEqual(listenerCaps(config, [{ name: 'http' }, { name: 'stomp' }, { name: 'mqtt' }, { name: 'admin' }]), [
      { name: 'http', maxConnections: 7 },
      { name: 'stomp', maxConnections: 8 },
      { name: 'mqtt', maxConnections: 9 },
    ]);
  });

  it('warns, naming the caps and how to raise the limit, when the caps need more than the limit allows', () => {
    const { log, lines } = capture();
    const v = checkOpenFiles(log, [{ name: 'mqtt', maxConnections: 100000 }, { name: 'http', maxConnections: 10 }], { soft: 20000, hard: 20000 });
    assert.equal(v?.kind, 'too_low');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 40, 'a warning');
    assert.match(lines[0]!.msg, /limit of 20000 .* about 19744 connections, but the listeners' maxConnections add up to 100010 \(mqtt 100000, http 10\)/);
    assert.match(lines[0]!.msg, /LimitNOFILE=/);
  });

  it('only informs when the caps fit or a listener has none; warns when the soft limit could not be raised', () => {
    const { log, lines } = capture();
    checkOpenFiles(log, [{ name: 'mqtt', maxConnections: 1000 }], { soft: 20000, hard: 20000 });
    checkOpenFiles(log, [{ name: 'mqtt', maxConnections: 0 }], { soft: 20000, hard: 20000 });
    assert.deepEqual(lines.map((l) => l.level), [30, 30]);
    assert.match(lines[1]!.msg, /about 19744 connections at once/);
    lines.length = 0;
    checkOpenFiles(log, [{ name: 'mqtt', maxConnections: 0 }], { soft: 1024, hard: 20000 });
    assert.equal(lines[0]!.level, 40);
    assert.match(lines[0]!.msg, /soft limit stays at 1024, below the hard limit 20000.*ulimit -Sn 20000/);
  });
});
