/**
 * A token passed where a password may go (STOMP passcode with a login, MQTT
 * password with a user name) is a token login: it must never cost a password
 * check nor count as a failed password login (which would lock the user and
 * the address out after loginMaxAttempts reconnects).
 */
import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import mqtt from 'mqtt';
import { api, login, startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';

describe('tokens in password fields', () => {
  let s: TestServer;
  let token: string;
  before(async () => {
    s = await startServer({ loginMaxAttempts: 3 });
    token = await login(s.url);
  });
  after(async () => {
    await s.stop();
  });

  it('accepts a token as STOMP passcode and MQTT password many times without tripping the login limit', async () => {
    for (let i = 0; i < 6; i++) {
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      assert.equal((await c.connect({ login: 'admin', passcode: token })).command, 'CONNECTED');
      c.close();
      const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${s.server.address('mqtt').port}`, { username: 'admin', password: token, reconnectPeriod: 0 });
      await m.endAsync();
    }
    // The password still works: nothing was counted against the name or the address.
    const r = await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: ADMIN_PASSWORD } });
    assert.equal(r.status, 200, r.body.message);
  });

  it('still refuses a wrong password, and counts it', async () => {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    const f = await c.connect({ login: 'admin', passcode: 'not-the-password' });
    assert.equal(f.command, 'ERROR');
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${s.server.address('mqtt').port}`, { username: 'admin', password: 'nope', reconnectPeriod: 0 }).catch((e: { code: number }) => e);
    assert.equal((m as { code: number }).code, 4, 'MQTT 3.1.1: bad user name or password');
    await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: 'wrong-again' } });
    const locked = await api(s.url, 'POST', '/v1/login', { body: { username: 'admin', password: ADMIN_PASSWORD } });
    assert.equal(locked.status, 429, 'three failures over STOMP, MQTT and HTTP reach the limit of 3');
  });
});
