/**
 * Chromium for the console and demo tests: Playwright (playwright-core)
 * driving Debian's Chromium at a desktop (1280×800) or phone (390×844)
 * width, each page recording its page errors and console errors, logged
 * in to the console the way a person does, with screenshots under
 * test-output/screenshots/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ADMIN_PASSWORD } from './server.js';

export const CHROMIUM = process.env['HERALD_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
const SHOTS = fileURLToPath(new URL('../../test-output/screenshots/', import.meta.url));
const BUILT = fileURLToPath(new URL('../../dist/web/console/index.html', import.meta.url));

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** Why the browser tests cannot run here (a skip reason), or false; under CI a missing piece is an error. */
export function browserMissing(): string | false {
  const missing = !existsSync(CHROMIUM) ? `Chromium at ${CHROMIUM} (apt-get install -y chromium)` : !existsSync(BUILT) ? 'the built console (npm run build)' : undefined;
  if (!missing) return false;
  if (process.env['CI']) throw new Error(`CI=true but the browser tests need ${missing}`);
  return `needs ${missing}`;
}

/** A page and what went wrong on it: uncaught exceptions, and console errors (with the URL they name). */
export interface WatchedPage {
  page: Page;
  pageErrors: string[];
  consoleErrors: string[];
}

export class TestBrowser {
  private readonly contexts: BrowserContext[] = [];

  private constructor(private readonly browser: Browser) {}

  static async launch(): Promise<TestBrowser> {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
    return new TestBrowser(browser);
  }

  async page(viewport = DESKTOP): Promise<WatchedPage> {
    const ctx = await this.browser.newContext({ viewport });
    this.contexts.push(ctx);
    const page = await ctx.newPage();
    page.setDefaultTimeout(10_000);
    const watched: WatchedPage = { page, pageErrors: [], consoleErrors: [] };
    page.on('pageerror', (err) => watched.pageErrors.push(`${page.url()}: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') watched.consoleErrors.push(`${page.url()}: ${m.text()} (${m.location().url})`);
    });
    return watched;
  }

  async close(): Promise<void> {
    for (const c of this.contexts) await c.close().catch(() => undefined);
    await this.browser.close();
  }
}

/** Logs in to the console at `base` as a person does, and waits for the overview. */
export async function consoleLogin(page: Page, base: string, user = 'admin', password = ADMIN_PASSWORD): Promise<void> {
  await page.goto(`${base}/console/`);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
}

/** Opens a console section by its menu link, through the Menu button on a phone. */
export async function openSection(page: Page, label: string): Promise<void> {
  const menu = page.getByRole('button', { name: 'Menu' });
  if (await menu.isVisible()) await menu.click();
  await page.getByRole('link', { name: label, exact: true }).click();
}

/** Answers the console's confirmation dialog with its action button (or Cancel), after checking what it asks. */
export async function answerDialog(page: Page, question: string | RegExp, button: string): Promise<void> {
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('heading', { name: question }).waitFor();
  await dialog.getByRole('button', { name: button, exact: true }).click();
  await dialog.waitFor({ state: 'detached' });
}

export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
}
