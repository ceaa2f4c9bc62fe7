/**
 * The overview's charts in Chromium: they keep their history across a
 * reload (the server keeps it), fit a 390 px card after the window
 * narrows, name every series in their legends with its latest value
 * without hovering, keep identical series apart, label time in hours and
 * minutes, and offer 15 min, 1 h and 24 h.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { browserMissing, consoleLogin, DESKTOP, PHONE, shot, TestBrowser } from '../helpers/browser.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp } from '../helpers/stomp.js';

const CHARTS = ['connections', 'messages', 'problems', 'store', 'loop', 'memory'];

/** Per chart: how many points it draws and the time of its first. */
async function drawn(page: Page): Promise<Record<string, { points: number; first: number }>> {
  return page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll<HTMLElement>('.chart')].map((c) => [c.id.replace('chart-', ''), { points: Number(c.dataset['points'] ?? 0), first: Number(c.dataset['first'] || 0) }]),
    ),
  );
}

describe('overview charts in Chromium', { skip: browserMissing() }, () => {
  let s: TestServer;
  let browser: TestBrowser;
  let admin: string;
  let subscriber: RawStomp;
  let traffic: NodeJS.Timeout;

  before(async () => {
    s = await startServer({ historySampleSeconds: 1 });
    admin = await login(s.url);
    browser = await TestBrowser.launch();
    subscriber = await RawStomp.tcp(s.server.address('stomp').port);
    await subscriber.connect({ login: 'admin', passcode: 'admin-secret-pw' });
    subscriber.send('SUBSCRIBE\nid:1\ndestination:/topic/charts\n\n\0');
    // Messages in and out every 200 ms, so the rate charts have something to draw.
    traffic = setInterval(() => void api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/charts', body: 'tick' } }).catch(() => undefined), 200);
  });
  after(async () => {
    clearInterval(traffic);
    subscriber?.close();
    await browser?.close();
    await s?.stop();
  });

  it('keeps its history across a reload: the points drawn before are drawn again at once', async () => {
    const { page, pageErrors, consoleErrors } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    // 15 min: points of 3 s (1 s samples), so a few come quickly.
    await page.getByRole('group', { name: 'Time range' }).getByRole('button', { name: '15 min' }).click();
    // A few samples, and messages counted in them.
    await page.locator('#chart-messages .legend li[data-series="msg.in"] .value').filter({ hasNotText: /^(–|0)$/ }).waitFor();
    await page.waitForFunction(() => Number(document.querySelector<HTMLElement>('#chart-messages')?.dataset['points'] ?? 0) >= 3);
    const before = await drawn(page);
    const reloadedAt = Date.now();
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('.chart[data-points]').length === 6);
    const after = await drawn(page);
    for (const c of CHARTS) {
      assert.ok(after[c]!.first > 0 && after[c]!.first <= before[c]!.first, `${c}: still starts at the first point drawn before the reload`);
      assert.ok(after[c]!.first < reloadedAt - 1000, `${c}: points from before the reload`);
      assert.ok(after[c]!.points >= before[c]!.points, `${c}: ${after[c]!.points} points after, ${before[c]!.points} before`);
    }
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });

  it('names every series in its legend with its latest value, without hovering, and keeps identical series apart', async () => {
    const { page } = await browser.page(PHONE);
    await consoleLogin(page, s.url);
    await page.waitForFunction(() => document.querySelectorAll('.chart[data-points]').length === 6);
    assert.equal(await page.locator('.u-legend').count(), 0, "uPlot's own legend (unlabelled rows on a phone) is not used");
    const legends = await page.evaluate(() =>
      [...document.querySelectorAll('.chart')].map((c) => ({
        chart: c.id,
        items: [...c.querySelectorAll('.legend li[data-series]')].map((li) => ({
          label: li.querySelector('.label')?.textContent ?? '',
          value: li.querySelector('.value')?.textContent ?? '',
          look: `${li.querySelector('line')?.getAttribute('stroke')} ${li.querySelector('line')?.getAttribute('stroke-dasharray') ?? 'solid'}`,
        })),
      })),
    );
    for (const { chart, items } of legends) {
      assert.ok(items.length > 0, `${chart} has a legend`);
      for (const item of items) assert.match(item.label, /\w/, `${chart}: every series is named`);
      assert.equal(new Set(items.map((i) => i.look)).size, items.length, `${chart}: each series has its own colour and dash`);
    }
    const conn = legends.find((l) => l.chart === 'chart-connections')!;
    assert.deepEqual(
      conn.items.map((i) => i.label),
      ['stomp-ws', 'stomp-tcp', 'json-ws', 'mqtt-tcp', 'mqtt-ws'],
    );
    // Values show without hovering: the subscriber's connection, and memory.
    assert.equal(conn.items.find((i) => i.label === 'stomp-tcp')!.value, '1');
    const memory = legends.find((l) => l.chart === 'chart-memory')!;
    for (const item of memory.items) assert.match(item.value, /^\d+(\.\d+)?$/, `${item.label} shows a number`);
    await shot(page, 'console-charts-phone');
  });

  it('fits a 390 px card when the window narrows, and labels time in hours and minutes', async () => {
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    await page.waitForFunction(() => document.querySelectorAll('.chart[data-points]').length === 6);
    await page.setViewportSize(PHONE);
    // The plots follow their cards (ResizeObserver): nothing sticks out, no title is cut.
    await page.waitForFunction(() =>
      [...document.querySelectorAll<HTMLElement>('.chart')].every((c) => {
        const canvas = c.querySelector('canvas');
        return canvas !== null && canvas.getBoundingClientRect().right <= c.getBoundingClientRect().right && c.getBoundingClientRect().width <= 390;
      }),
    );
    const fits = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>('.chart')].map((c) => {
        const title = c.querySelector('h2')!;
        const canvas = c.querySelector('canvas')!;
        return { id: c.id, titleCut: title.scrollWidth > title.clientWidth, canvas: canvas.getBoundingClientRect().width, card: c.getBoundingClientRect().width, page: document.documentElement.scrollWidth };
      }),
    );
    for (const f of fits) {
      assert.equal(f.titleCut, false, `${f.id}: the whole title shows`);
      assert.ok(f.canvas <= f.card && f.canvas > f.card * 0.8, `${f.id}: the plot (${f.canvas} px) fills its card (${f.card} px)`);
      assert.ok(f.page <= 390, 'nothing makes the page scroll sideways');
    }
    await shot(page, 'console-charts-narrowed');
    // Time labels: HH:MM, never milliseconds.
    const ticks = await page.locator('#chart-messages').getAttribute('data-x-ticks');
    const labels = (ticks ?? '').split(' ').filter(Boolean);
    assert.ok(labels.length >= 2, `time labels drawn: ${ticks}`);
    for (const l of labels) assert.match(l, /^\d\d:\d\d(:\d\d)?$/, `"${l}" is a time of day without milliseconds`);
  });

  it('offers 15 min, 1 h and 24 h, and keeps the choice across a reload', async () => {
    const { page } = await browser.page(DESKTOP);
    await consoleLogin(page, s.url);
    const ranges = page.getByRole('group', { name: 'Time range' });
    for (const name of ['15 min', '1 h', '24 h']) assert.ok(await ranges.getByRole('button', { name }).isVisible());
    assert.equal(await ranges.getByRole('button', { name: '1 h' }).getAttribute('aria-pressed'), 'true');
    await ranges.getByRole('button', { name: '24 h' }).click();
    await page.locator('#history-note', { hasText: 'shown in 240 s averages' }).waitFor();
    assert.equal(await ranges.getByRole('button', { name: '24 h' }).getAttribute('aria-pressed'), 'true');
    await page.reload();
    await page.locator('#history-note', { hasText: 'shown in 240 s averages' }).waitFor();
    await ranges.getByRole('button', { name: '15 min' }).click();
    await page.locator('#history-note', { hasText: 'shown in 3 s averages' }).waitFor();
    assert.match(await page.locator('#history-note').innerText(), /^History of node .+, sampled every 1 s/);
  });
});
