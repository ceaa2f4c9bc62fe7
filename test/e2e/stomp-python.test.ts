/**
 * stomp.py (Debian's python3-stomp 8) as an independent STOMP 1.2 client: its
 * own framing, header escaping, heart-beats, transactions and ACK/NACK
 * against Herald over TCP. .ci/run installs it; elsewhere the test is skipped
 * when it is missing, and fails under CI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ADMIN_PASSWORD, login, startServer, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../fixtures/stomp_py_client.py', import.meta.url));
const have = existsSync('/usr/lib/python3/dist-packages/stomp/__init__.py') && existsSync(PYTHON);
if (!have && process.env['CI']) throw new Error('python3-stomp is required under CI (.ci/run installs it)');

interface Seen {
  connected: Record<string, string>;
  news: { body: string; note: string; 'content-type': string; subscription: string };
  beforeCommit: number;
  jobs: string[];
  redelivered: { body: string; redelivered: string };
  aliveAfterIdle: boolean;
  afterIdle: string;
  error: { message: string; 'receipt-id': string; body: string };
  closedAfterError: boolean;
  goodbyeReceipt: boolean;
}

describe('stomp.py (python3-stomp) against Herald', { skip: !have && 'python3-stomp not installed' }, () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ stompHeartbeatMs: 500 });
  });
  after(() => s.stop());

  it('connects, escapes headers, beats, groups sends in a transaction, NACKs and ACKs, and is refused in words', async () => {
    const token = await login(s.url);
    const port = String(s.server.address('stomp').port);
    const { stdout } = await run(PYTHON, [SCRIPT, port, 'admin', ADMIN_PASSWORD, token], { timeout: 30_000 });
    const seen = JSON.parse(stdout) as Seen;

    assert.equal(seen.connected['version'], '1.2');
    assert.equal(seen.connected['heart-beat'], '500,500');
    assert.match(seen.connected['server'] ?? '', /^Herald\//);

    assert.deepEqual(seen.news, {
      body: 'ünïcødé ✓',
      note: 'colon:here back\\slash\nnew line',
      'content-type': 'text/plain;charset=utf-8',
      subscription: 't',
    });
    assert.equal(seen.beforeCommit, 0, 'nothing from an open transaction');
    assert.deepEqual(seen.jobs, ['job 0', 'job 1', 'job 2']);
    assert.deepEqual(seen.redelivered, { body: 'job 0', redelivered: 'true' });
    assert.equal(seen.aliveAfterIdle, true);
    assert.equal(seen.afterIdle, 'still here');
    assert.equal(seen.error['receipt-id'], 'bad-1');
    assert.equal(seen.error.message, 'invalid destination');
    assert.match(seen.error.body, /\/nowhere\/x/);
    assert.equal(seen.closedAfterError, true);
    assert.equal(seen.goodbyeReceipt, true);

    // Everything acknowledged: the queue is empty.
    const left = await s.server.ctx.store.claimQueue('py-jobs', 'probe', 10);
    assert.deepEqual(left, []);
  });
});
