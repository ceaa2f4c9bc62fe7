/**
 * Clients and subscriptions in the console, in Chromium: a STOMP, an MQTT
 * and a JSON WebSocket client started by the test appear with their
 * subscriptions (on the Clients page, each client's own page and the
 * Subscriptions page), and "Disconnect user" ends all three.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { answerDialog, browserMissing, consoleLogin, DESKTOP, openSection, PHONE, shot, TestBrowser, type WatchedPage } from '../helpers/browser.js';
import { JsonClient, jsonUrl } from '../helpers/json-ws.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';

describe('clients and subscriptions in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: TestBrowser;
  let stomp: RawStomp;
  let m: MqttClient;
  let json: JsonClient;

  before(async () => {
    s = await startServer();
    const admin = await login(s.url);
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'trio', password: 'trio-password' } });
    browser = await TestBrowser.launch();
    stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: 'trio', passcode: 'trio-password' });
    stomp.send('SUBSCRIBE\nid:1\ndestination:/topic/plant.*\nack:client\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    m = await mqtt.connectAsync(`mqtt://127.0.0.1:${s.server.address('mqtt').port}`, { username: 'trio', password: 'trio-password', clientId: 'trio-device', protocolVersion: 5, reconnectPeriod: 0 });
    await m.subscribeAsync({ 'plant/+': { qos: 1 }, '$share/crew/plant/#': { qos: 0 } });
    json = await JsonClient.open(jsonUrl(s, await login(s.url, 'trio', 'trio-password')) + '?device=tablet');
    json.send({ action: 'subscribe', topic: 'plant.*' });
    await json.next('ok');
  });
  after(async () => {
    stomp?.close();
    await m?.endAsync().catch(() => undefined);
    json?.close();
    await browser?.close();
    await s?.stop();
  });

  const noErrors = (w: WatchedPage): void => {
    assert.deepEqual(w.pageErrors, []);
    assert.deepEqual(w.consoleErrors, []);
  };

  it('lists the three clients with their subscriptions, and shows each one in detail', async () => {
    for (const [width, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const w = await browser.page(viewport);
      const { page } = w;
      await consoleLogin(page, s.url);
      await openSection(page, 'Clients');
      const rows = page.locator('#clients tr', { hasText: 'trio' });
      await rows.nth(2).waitFor();
      const byProtocol = async (protocol: string) => page.locator('#clients tr', { hasText: 'trio' }).filter({ hasText: protocol });
      assert.equal(await (await byProtocol('stomp-tcp')).locator('td[data-label="Subscriptions"]').innerText(), '1');
      assert.equal(await (await byProtocol('mqtt-tcp')).locator('td[data-label="Subscriptions"]').innerText(), '2');
      assert.equal(await (await byProtocol('json-ws')).locator('td[data-label="Subscriptions"]').innerText(), '2', 'its mailbox and one topic');
      await shot(page, `console-clients-trio-${width}`);
      // The MQTT client's own page.
      await (await byProtocol('mqtt-tcp')).getByRole('link', { name: 'Details' }).click();
      await page.getByRole('heading', { name: 'trio · mqtt-tcp', level: 1 }).waitFor();
      const f = page.locator('#client-facts');
      assert.match(await f.innerText(), /MQTT client id\s+trio-device/);
      assert.match(await f.innerText(), /Protocol\s+mqtt-tcp \(version 5\)/);
      assert.match(await f.innerText(), /TLS\s+no/);
      assert.match(await f.innerText(), /Logged in with\s+user name and password/);
      assert.match(await f.innerText(), /Bytes in \/ out\s+\d+ B \/ \d+ B/);
      const subs = await page.locator('#client td[data-label="Destination"]').allInnerTexts();
      assert.deepEqual(subs, ['plant/+', '$share/crew/plant/#']);
      assert.deepEqual(await page.locator('#client td[data-label="QoS"]').allInnerTexts(), ['1', '0']);
      await shot(page, `console-client-${width}`);
      // The STOMP client's, by its address.
      await page.goBack();
      await (await byProtocol('stomp-tcp')).getByRole('link', { name: 'Details' }).click();
      await page.getByRole('heading', { name: 'trio · stomp-tcp', level: 1 }).waitFor();
      assert.deepEqual(await page.locator('#client td[data-label="Ack"]').allInnerTexts(), ['client']);
      noErrors(w);
    }
  });

  it('groups the subscriptions by filter with their subscribers, protocols and QoS', async () => {
    for (const [width, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const w = await browser.page(viewport);
      const { page } = w;
      await consoleLogin(page, s.url);
      await openSection(page, 'Subscriptions');
      const row = page.locator('#subscriptions tr', { hasText: 'plant/+' }).filter({ hasText: 'topic' });
      await row.waitFor();
      assert.equal(await row.locator('td[data-label="Subscribers"]').innerText(), '3');
      assert.match(await row.locator('td[data-label="Subscribed to"]').innerText(), /plant\/\+\s+STOMP \/topic\/plant\.\*/);
      assert.deepEqual((await row.locator('td[data-label="Protocols"]').innerText()).split(', ').sort(), ['json-ws 1', 'mqtt-tcp 1', 'stomp-tcp 1']);
      assert.equal(await row.locator('td[data-label="QoS"]').innerText(), '1');
      await row.getByText('3 sessions').click();
      assert.equal(await row.getByRole('link', { name: 'trio' }).count(), 3);
      const shared = page.locator('#subscriptions tr', { hasText: 'shared (group crew)' });
      assert.equal(await shared.locator('td[data-label="Subscribed to"] code').innerText(), 'plant/#');
      // Narrowed to one protocol.
      await page.getByLabel('Protocol').selectOption('json-ws');
      await page.getByRole('button', { name: 'Show' }).click();
      await page.locator('#subscriptions tr', { hasText: 'shared' }).waitFor({ state: 'detached' });
      assert.equal(await page.locator('#subscriptions tr', { hasText: 'plant/+' }).locator('td[data-label="Subscribers"]').innerText(), '1');
      await shot(page, `console-subscriptions-trio-${width}`);
      noErrors(w);
    }
  });

  it('ends the STOMP, MQTT and JSON WebSocket sessions of a user with "Disconnect user"', async () => {
    const w = await browser.page(DESKTOP);
    const { page } = w;
    await consoleLogin(page, s.url);
    await openSection(page, 'Clients');
    const row = page.locator('#clients tr', { hasText: 'trio' }).filter({ hasText: 'json-ws' });
    await row.getByRole('button', { name: 'Disconnect user' }).click();
    await answerDialog(page, 'Disconnect every session of trio?', 'Disconnect all');
    await page.locator('#banner', { hasText: 'Disconnected 3 sessions of trio.' }).waitFor();
    await stomp.closedPromise;
    await json.closed;
    for (let i = 0; i < 200 && m.connected; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(m.connected, false, 'the MQTT client was ended');
    await page.locator('#clients tr', { hasText: 'trio' }).first().waitFor({ state: 'detached' });
    const audit = await api<{ records: { action: string; target: string }[] }>(s.url, 'GET', '/api/admin/audit?action=session', { token: await login(s.url) });
    assert.equal(audit.body.data.records[0]?.action, 'session.disconnect-user');
    noErrors(w);
  });
});
