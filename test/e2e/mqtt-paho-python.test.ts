/**
 * paho-mqtt for Python (Debian's python3-paho-mqtt 1.6) as an independent
 * MQTT 5.0 and 3.1.1 client: its own packet codec, properties, sessions and
 * wills against Herald over TCP. .ci/run installs it; elsewhere the test is
 * skipped when it is missing, and fails under CI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ADMIN_PASSWORD, startServer, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../fixtures/paho_mqtt_client.py', import.meta.url));
const have = existsSync('/usr/lib/python3/dist-packages/paho/mqtt/client.py') && existsSync(PYTHON);
if (!have && process.env['CI']) throw new Error('python3-paho-mqtt is required under CI (.ci/run installs it)');

interface Msg {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  props: Record<string, unknown>;
}
interface Seen {
  firstConnack: { rc: number; sessionPresent: boolean };
  suback: number[];
  live: Msg[];
  selfEchoes: number;
  resumeConnack: { rc: number; sessionPresent: boolean };
  whileAway: Msg[];
  will: Msg[];
  v311Connack: { rc: number; sessionPresent: boolean };
  v311Suback: number[];
  retained: Msg[];
  badV311: number;
  wsv311Connack: number;
  wsv5Connack: number;
  wsv311: string[];
  wsv5: string[];
}

describe('paho-mqtt for Python against Herald', { skip: !have && 'python3-paho-mqtt not installed' }, () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.stop());

  it('speaks MQTT 5 properties, no-local, sessions and wills, 3.1.1 retained messages and refusals, over TCP and WebSocket', async () => {
    const port = String(s.server.address('mqtt').port);
    const httpPort = String(s.server.address('http').port);
    const { stdout } = await run(PYTHON, [SCRIPT, port, httpPort, 'admin', ADMIN_PASSWORD], { timeout: 60_000 });
    const seen = JSON.parse(stdout) as Seen;

    assert.deepEqual(seen.firstConnack, { rc: 0, sessionPresent: false });
    assert.deepEqual(seen.suback, [2]);
    assert.deepEqual(seen.live, [
      {
        topic: 'py/a',
        payload: '{"n":1}',
        qos: 1,
        retain: false,
        props: { ContentType: 'application/json', ResponseTopic: 'py/replies', UserProperty: [['trace', 'abc']], SubscriptionIdentifier: [42], CorrelationData: 'req-1' },
      },
      { topic: 'py/b', payload: 'two', qos: 2, retain: false, props: { SubscriptionIdentifier: [42] } },
      { topic: 'py/state', payload: 'on', qos: 1, retain: false, props: { SubscriptionIdentifier: [42] } },
    ]);
    assert.equal(seen.selfEchoes, 0, 'no-local: its own publish never came back');
    assert.deepEqual(seen.resumeConnack, { rc: 0, sessionPresent: true });
    assert.deepEqual(
      seen.whileAway.map((m) => [m.topic, m.payload, m.qos]),
      [['py/offline', 'while away', 1]],
    );
    assert.deepEqual(
      seen.will.map((m) => [m.topic, m.payload]),
      [['py/will', 'gone']],
    );
    assert.deepEqual(seen.v311Connack, { rc: 0, sessionPresent: false });
    assert.deepEqual(seen.v311Suback, [1]);
    assert.deepEqual(
      seen.retained.map((m) => [m.topic, m.payload, m.retain]),
      [['py/state', 'on', true]],
    );
    assert.equal(seen.badV311, 4, 'CONNACK 4: bad user name or password');
    // Over WebSocket too (/mqtt, subprotocol "mqtt").
    assert.deepEqual([seen.wsv311Connack, seen.wsv311], [0, ['over websocket v311']]);
    assert.deepEqual([seen.wsv5Connack, seen.wsv5], [0, ['over websocket v5']]);
  });
});
