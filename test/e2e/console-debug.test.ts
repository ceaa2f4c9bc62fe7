/**
 * Live debug in Chromium beyond STOMP: an MQTT 5 publish from the console
 * (QoS 1, v5 properties) reaches a STOMP subscriber started by the test;
 * the console's MQTT subscription shows a message with its properties, and
 * stops after Unsubscribe; a trace shows a message with its publisher and
 * its receivers, and is closed when the page is left.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { browserMissing, consoleLogin, DESKTOP, openSection, PHONE, shot, TestBrowser, type WatchedPage } from '../helpers/browser.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { frameHeader, RawStomp } from '../helpers/stomp.js';

describe('live debug over MQTT, and traces, in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: TestBrowser;
  let listener: RawStomp;

  before(async () => {
    s = await startServer();
    const admin = await login(s.url);
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'listener', password: 'listener-password' } });
    browser = await TestBrowser.launch();
    listener = await RawStomp.tcp(s.server.address('stomp').port);
    await listener.connect({ login: 'listener', passcode: 'listener-password' });
    listener.send('SUBSCRIBE\nid:1\ndestination:/topic/debug.*\nreceipt:r\n\n\0');
    await listener.next('RECEIPT');
  });
  after(async () => {
    listener?.close();
    await browser?.close();
    await s?.stop();
  });

  const noErrors = (w: WatchedPage): void => {
    assert.deepEqual(w.pageErrors, []);
    assert.deepEqual(w.consoleErrors, []);
  };
  const mqttUrl = () => `mqtt://127.0.0.1:${s.server.address('mqtt').port}`;

  it('publishes over MQTT 5 from the console with QoS 1 and v5 properties to a STOMP subscriber', async () => {
    const w = await browser.page(DESKTOP);
    const { page } = w;
    await consoleLogin(page, s.url);
    await openSection(page, 'Live debug');
    // The console's own STOMP session listens too: it shows the message with its headers.
    await page.locator('#debug-state', { hasText: /^Connected/ }).waitFor();
    const stompSub = page.getByRole('form', { name: 'Subscribe', exact: true });
    await stompSub.getByLabel('Destination').fill('/topic/debug.news');
    await stompSub.getByRole('button', { name: 'Subscribe' }).click();
    await page.locator('#frames li', { hasText: 'SUBSCRIBE /topic/debug.news' }).waitFor();
    await page.getByRole('group', { name: 'Live debug tool' }).getByRole('button', { name: 'MQTT 5' }).click();
    await page.locator('#mqtt-state', { hasText: /^Connected \(MQTT 5 over WebSocket/ }).waitFor();
    const form = page.getByRole('form', { name: 'MQTT publish' });
    await form.getByLabel('Topic', { exact: true }).fill('debug/news');
    await form.getByLabel('QoS').selectOption('1');
    await form.getByLabel('Payload').fill('from the console');
    await form.getByLabel('Content type').fill('text/plain');
    await form.getByLabel('Response topic').fill('debug/replies');
    await form.getByLabel(/User properties/).fill('origin=console\nticket=42');
    await form.getByLabel(/Message expiry/).fill('600');
    await form.getByRole('button', { name: 'Publish' }).click();
    const msg = await listener.next('MESSAGE');
    assert.equal(msg.body.toString(), 'from the console');
    assert.equal(frameHeader(msg, 'destination'), '/topic/debug.news');
    assert.equal(frameHeader(msg, 'content-type'), 'text/plain');
    assert.equal(frameHeader(msg, 'origin'), 'console', 'user properties become STOMP headers');
    assert.equal(frameHeader(msg, 'ticket'), '42');
    assert.equal(frameHeader(msg, 'reply-to'), 'debug/replies');
    await page.locator('#mqtt-frames li', { hasText: 'debug/news: acknowledged (PUBACK success (0x00))' }).waitFor();
    assert.match(await page.locator('#mqtt-frames').innerText(), /→ out PUBLISH debug\/news QoS 1 id \d+, 16 bytes/);
    // A refusal is shown in the server's words: $ topics are the server's.
    await form.getByLabel('Topic', { exact: true }).fill('$SYS/mine');
    await form.getByRole('button', { name: 'Publish' }).click();
    await page.locator('#mqtt-frames li.frame-ERROR', { hasText: /\$SYS\/mine: refused: .*reserved for the server/ }).waitFor();
    await shot(page, 'console-debug-mqtt-desktop');
    await page.getByRole('group', { name: 'Live debug tool' }).getByRole('button', { name: 'STOMP' }).click();
    const seen = page.locator('#frames li.frame-MESSAGE', { hasText: '/topic/debug.news  from the console' });
    await seen.waitFor();
    assert.match(await seen.innerText(), /content-type: text\/plain/);
    assert.match(await seen.innerText(), /origin: console/);
    assert.match(await seen.innerText(), /ticket: 42/);
    assert.match(await seen.innerText(), /reply-to: debug\/replies/);
    noErrors(w);
  });

  it('subscribes over MQTT 5, shows messages with their properties, and stops after Unsubscribe', async () => {
    const w = await browser.page(PHONE);
    const { page } = w;
    await consoleLogin(page, s.url);
    await page.goto(`${s.url}/console/#debug/mqtt`);
    await page.locator('#mqtt-state', { hasText: /^Connected/ }).waitFor();
    const sub = page.getByRole('form', { name: 'MQTT subscribe' });
    for (const [filter, qos] of [['sensors/#', '2'], ['marker/#', '0']] as const) {
      await sub.getByLabel('Topic filter').fill(filter);
      await sub.getByLabel('QoS').selectOption(qos);
      await sub.getByRole('button', { name: 'Subscribe' }).click();
      await page.locator('#mqtt-subscriptions li', { hasText: filter }).waitFor();
    }
    assert.match(await page.locator('#mqtt-frames').innerText(), /← in SUBACK id \d+: granted QoS 2 \(0x02\)/);
    const pub = await mqtt.connectAsync(mqttUrl(), { username: 'listener', password: 'listener-password', protocolVersion: 5, reconnectPeriod: 0 });
    await pub.publishAsync('sensors/t1', '21.5', { qos: 2, properties: { contentType: 'text/plain', userProperties: { unit: 'C' }, correlationData: Buffer.from([0xab]) } });
    const line = page.locator('#mqtt-frames li.frame-MESSAGE', { hasText: 'sensors/t1  21.5' });
    await line.waitFor();
    assert.match(await line.innerText(), /QoS 2; content type text\/plain; correlation data ab; user property unit=C/);
    await shot(page, 'console-debug-mqtt-phone');
    await page.locator('#mqtt-subscriptions li', { hasText: 'sensors/#' }).getByRole('button', { name: 'Unsubscribe' }).click();
    await page.locator('#mqtt-subscriptions li', { hasText: 'sensors/#' }).waitFor({ state: 'detached' });
    await page.locator('#mqtt-frames li', { hasText: /← in UNSUBACK id \d+: success/ }).waitFor();
    await pub.publishAsync('sensors/t1', 'after unsubscribe', { qos: 1 });
    await pub.publishAsync('marker/done', 'marker', { qos: 1 });
    await page.locator('#mqtt-frames li.frame-MESSAGE', { hasText: 'marker/done  marker' }).waitFor();
    assert.doesNotMatch(await page.locator('#mqtt-frames').innerText(), /after unsubscribe/);
    await pub.endAsync();
    noErrors(w);
  });

  it('traces a topic filter: each message with its publisher and receivers; the trace ends with the page', async () => {
    for (const [width, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const w = await browser.page(viewport);
      const { page } = w;
      await consoleLogin(page, s.url);
      await page.goto(`${s.url}/console/#debug/trace`);
      const form = page.getByRole('form', { name: 'Trace' });
      await form.getByLabel('Topic filter to trace').fill('/topic/debug.*');
      await form.getByRole('button', { name: 'Start trace' }).click();
      await page.locator('#trace-state', { hasText: /^Tracing debug\/\+ on this node/ }).waitFor();
      const pub = await mqtt.connectAsync(mqttUrl(), { username: 'listener', password: 'listener-password', clientId: `tracer-${width}`, reconnectPeriod: 0 });
      await pub.publishAsync('debug/traced', `seen in the trace (${width})`, { qos: 1 });
      await pub.publishAsync('elsewhere/x', 'not traced', { qos: 1 });
      const row = page.locator('#trace-events tr', { hasText: `seen in the trace (${width})` });
      await row.waitFor();
      assert.match(await row.locator('td[data-label="Publisher"]').innerText(), /^listener · mqtt-tcp · mqtt-/);
      const receivers = await row.locator('td[data-label="Receivers"]').innerText();
      assert.match(receivers, /^1 session\s+listener · stomp-tcp · stomp-/);
      assert.equal(await row.locator('td[data-label="Topic"] code').innerText(), 'debug/traced');
      assert.doesNotMatch(await page.locator('#trace-events').innerText(), /not traced/);
      await shot(page, `console-debug-trace-${width}`);
      await pub.endAsync();
      // Leaving the page closes the trace on the server.
      await openSection(page, 'Overview');
      for (let i = 0; i < 200 && (s.server.ctx.broker as unknown as { tap: unknown }).tap !== undefined; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal((s.server.ctx.broker as unknown as { tap: unknown }).tap, undefined, 'no trace left open');
      noErrors(w);
    }
  });
});
