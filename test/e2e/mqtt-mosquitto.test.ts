/**
 * Debian's mosquitto_pub / mosquitto_sub as an independent MQTT client
 * (.ci/run installs mosquitto-clients; elsewhere the test is skipped when
 * they are missing, and fails under CI).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it, before, after } from 'node:test';
import { promisify } from 'node:util';
import { startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';

const run = promisify(execFile);
const have = existsSync('/usr/bin/mosquitto_pub') && existsSync('/usr/bin/mosquitto_sub');
if (!have && process.env['CI']) throw new Error('mosquitto-clients are required under CI (.ci/run installs them)');

describe('mosquitto_pub and mosquitto_sub against Herald', { skip: !have && 'mosquitto-clients not installed' }, () => {
  let s: TestServer;
  let port: string;
  before(async () => {
    s = await startServer();
    port = String(s.server.address('mqtt').port);
  });
  after(() => s.stop());

  for (const version of ['mqttv311', 'mqttv5'] as const) {
    it(`subscribes and publishes at QoS 1 and 2 with ${version}`, async () => {
      const common = ['-h', '127.0.0.1', '-p', port, '-u', 'admin', '-P', ADMIN_PASSWORD, '-V', version];
      const sub = spawn('mosquitto_sub', [...common, '-t', 'lab/#', '-q', '2', '-C', '2', '-v', '-W', '10']);
      let out = '';
      sub.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => sub.on('exit', r));
      // mosquitto_sub has no ready signal: wait until its subscription exists on the server.
      const stomp = await RawStomp.tcp(s.server.address('stomp').port);
      await stomp.connect({ login: 'admin', passcode: ADMIN_PASSWORD });
      const deadline = Date.now() + 10_000;
      while (s.server.ctx.broker.topicSubscriptions === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await run('mosquitto_pub', [...common, '-t', 'lab/temp', '-m', '21.5', '-q', '1']);
      stomp.send('SEND\ndestination:/topic/lab.humidity\n\n40%\0');
      assert.equal(await exited, 0);
      assert.deepEqual(out.trim().split('\n').sort(), ['lab/humidity 40%', 'lab/temp 21.5']);
      stomp.close();
    });
  }

  it('is refused with a wrong password', async () => {
    await assert.rejects(run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'admin', '-P', 'wrong', '-t', 'x', '-m', 'y']), /not authori[sz]ed|bad user name or password/i);
  });
});
