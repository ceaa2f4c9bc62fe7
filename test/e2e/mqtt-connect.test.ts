/**
 * MQTT CONNECT with mqtt.js: refused credentials and their return and reason
 * codes, assigned client ids and capped keep-alive, and session takeover.
 * Malformed CONNECTs are in mqtt-bad-input.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import { login, startServer, type TestServer } from '../helpers/server.js';
import { ADMIN, refusedWith, tcpUrl } from '../helpers/mqtt.js';

describe('MQTT CONNECT with mqtt.js', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ mqttMaxKeepAliveSeconds: 120 });
  });
  after(() => s.stop());

  it('refuses bad credentials with 3.1.1 return codes and 5.0 reason codes', async () => {
    assert.equal(await refusedWith(tcpUrl(s), { username: 'admin', password: 'wrong', protocolVersion: 4 }), 4);
    assert.equal(await refusedWith(tcpUrl(s), { username: 'admin', password: 'wrong', protocolVersion: 5 }), 0x86);
    assert.equal(await refusedWith(tcpUrl(s), { protocolVersion: 4 }), 5, 'anonymous refused');
    assert.equal(await refusedWith(tcpUrl(s), { protocolVersion: 5 }), 0x87);
    const token = await login(s.url);
    assert.equal(await refusedWith(tcpUrl(s), { username: 'whoever', password: token, protocolVersion: 4 }), 0, 'a Herald token as password');
  });

  it('assigns a client id to a v5 client that sends none, and caps keep-alive as server keep alive', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: '', keepalive: 3600 });
    const props = (c as unknown as { connackPacket?: { properties?: { assignedClientIdentifier?: string; serverKeepAlive?: number } } }).connackPacket?.properties;
    assert.match(props?.assignedClientIdentifier ?? '', /^herald-/);
    assert.equal(props?.serverKeepAlive, 120);
    await c.endAsync();
  });

  it('takes over a session when the same client id connects again', async () => {
    const first = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'dup-id' });
    const ended = new Promise<number | undefined>((resolve) => first.once('disconnect', (p) => resolve(p.reasonCode)));
    const second = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'dup-id' });
    assert.equal(await ended, 0x8e);
    await second.endAsync();
    first.end(true);
  });
});
