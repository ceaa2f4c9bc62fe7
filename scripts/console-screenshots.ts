/**
 * Makes the console's pictures in docs/ (the README and docs/console.md
 * show them): a real server on loopback with clients on every protocol and
 * a few minutes of changing traffic, photographed by Chromium.
 *
 *   npm run build && npx tsx scripts/console-screenshots.ts   # HERALD_SHOT_SECONDS=240 by default
 */
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { chromium } from 'playwright-core';
import { api, login, startServer, ADMIN_PASSWORD } from '../test/helpers/server.js';
import { RawStomp, wsUrl } from '../test/helpers/stomp.js';
import { JsonClient, jsonUrl } from '../test/helpers/json-ws.js';

const seconds = Number(process.env['HERALD_SHOT_SECONDS'] ?? 240);
const docs = (name: string): string => fileURLToPath(new URL(`../docs/${name}`, import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const s = await startServer({ historySampleSeconds: 2 });
const admin = await login(s.url);
const names = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
for (const name of names) await api(s.url, 'POST', '/api/users', { token: admin, body: { name, password: `${name}-password` } });
const closers: (() => void)[] = [];
const stompPort = s.server.address('stomp').port;
const mqttPort = s.server.address('mqtt').port;

/** Clients on every protocol, subscribed to the topic the traffic goes to. */
async function connectSome(who: string, i: number): Promise<void> {
  const token = await login(s.url, who, `${who}-password`);
  const tcp = await RawStomp.tcp(stompPort);
  await tcp.connect({ login: who, passcode: `${who}-password` });
  tcp.send('SUBSCRIBE\nid:1\ndestination:/topic/scores.#\n\n\0');
  const ws = await RawStomp.ws(wsUrl(s.url, `/stomp?__token=${token}&device=${['kiosk', 'tablet', 'tv'][i % 3]}-${i}`));
  await ws.connect({});
  ws.send('SUBSCRIBE\nid:1\ndestination:/topic/scores.#\n\n\0');
  const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { username: who, password: `${who}-password`, clientId: `${who}-phone`, reconnectPeriod: 0 });
  await device.subscribeAsync('scores/#');
  const json = await JsonClient.open(jsonUrl(s, token));
  closers.push(() => tcp.close(), () => ws.close(), () => void device.end(true), () => json.ws.close());
}

for (const [i, who] of names.slice(0, 3).entries()) await connectSome(who, i);
const started = Date.now();
let joined = 3;
// Traffic in waves; more clients join as it goes.
while (Date.now() - started < seconds * 1000) {
  const t = (Date.now() - started) / 1000;
  const burst = Math.round(8 + 6 * Math.sin(t / 20));
  await Promise.all(Array.from({ length: burst }, (_, k) => api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: `/topic/scores.match${k % 4}`, body: JSON.stringify({ t, k }) } })));
  if (joined < names.length && t > (joined - 2) * (seconds / 4)) await connectSome(names[joined]!, joined++);
  await sleep(500);
}

const browser = await chromium.launch({ executablePath: process.env['HERALD_TEST_CHROMIUM'] ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
await page.goto(`${s.url}/console/`);
await page.getByLabel('User name').fill('admin');
await page.getByLabel('Password').fill(ADMIN_PASSWORD);
await page.getByRole('button', { name: 'Log in' }).click();
await page.getByRole('group', { name: 'Time range' }).getByRole('button', { name: '15 min' }).click();
await page.waitForFunction(() => document.querySelectorAll('.chart[data-points]').length === 6);
await sleep(1000);
await page.screenshot({ path: docs('console-overview.png'), fullPage: true });
await page.getByRole('link', { name: 'Clients', exact: true }).click();
await page.locator('#clients tr', { hasText: 'mqtt-tcp' }).first().waitFor();
await page.getByLabel('Filter').fill('alice');
await sleep(300);
await page.screenshot({ path: docs('console-clients.png'), fullPage: true });
await browser.close();
for (const close of closers) close();
await s.stop();
console.log('wrote docs/console-overview.png and docs/console-clients.png');
