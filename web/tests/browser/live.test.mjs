// Two devices on one session, in a real headless Chromium against the real server (the
// scripted model): what one plays streams into the other without a reload, each sees
// the other here and typing, a telling chosen on one shows on the other, and a dropped
// connection reconnects and catches up. Screens saved at a desktop and a phone viewport.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { ARGS, SHOTS, VIEWPORTS } from './support.mjs';


mkdirSync(SHOTS, { recursive: true });

// Test-only: keep a handle on the page's WebSockets, so a test can drop one as a network would.
const TRACK_SOCKETS = `(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets.push(this);
    }
  };
})();`;

let browser;
let server;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ARGS,
    headless: true,
  });
  // Slower tokens than the journeys use, so a reply is seen while it is being written.
  server = await startServer({ TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS: '70' });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

async function device(viewport, path = '/') {
  const context = await browser.newContext({
    viewport: VIEWPORTS[viewport],
    serviceWorkers: 'block',
    deviceScaleFactor: 1,
    isMobile: viewport === 'phone',
    hasTouch: viewport === 'phone',
  });
  context.setDefaultTimeout(15_000);
  await context.addInitScript(TRACK_SOCKETS);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (msg) => {
    // The browser reports a refused handshake while offline; that is the test's doing.
    if (msg.type() === 'error' && !/WebSocket|ERR_INTERNET_DISCONNECTED/.test(msg.text())) errors.push(msg.text());
  });
  await page.goto(server.url + path);
  return { context, page, errors };
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`) });
const composer = (page) => page.locator('#composer');
const remote = (page) => page.locator('.remote');
const here = (page) => page.getByRole('status', { name: 'Who else is here' });

async function settled(page) {
  await page.getByRole('button', { name: 'Stop the reply' }).waitFor({ state: 'detached' });
}

/** A mark on the page that a reload would wipe. */
async function mark(page) {
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
}
const notReloaded = (page) => page.evaluate(() => window.__notReloaded === true);

describe('two devices on one session', () => {
  let desk;
  let phone;
  let sessionId;
  after(async () => {
    await desk?.context.close();
    await phone?.context.close();
  });

  test('each device sees the other here, and typing', async () => {
    desk = await device('desktop');
    const { page } = desk;
    await page.getByRole('button', { name: 'New', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Start a new session' });
    await dialog.getByLabel('Title').fill('The Lantern Road');
    await dialog.getByLabel(/Premise/).fill('Two travellers and one lantern');
    await dialog.getByRole('button', { name: 'Start' }).click();
    await page.getByRole('heading', { name: 'The Lantern Road', level: 2 }).waitFor();
    const path = new URL(page.url()).pathname;
    sessionId = path.split('/').at(-1);

    phone = await device('phone', path);
    phone.reads = [];
    phone.page.on('request', (r) => {
      if (r.url().includes('/messages?')) phone.reads.push(new URL(r.url()).searchParams);
    });
    await phone.page.getByRole('heading', { name: 'The Lantern Road', level: 2 }).waitFor();
    await here(page).getByText('Also open on your other device').waitFor();
    await here(phone.page).locator('.face').waitFor();
    assert.equal(await here(page).locator('.face').count(), 1);
    await phone.page.waitForTimeout(300);
    assert.equal(phone.reads.length, 1, 'the live channel starts where the page loaded: nothing replayed to fetch');

    await composer(phone.page).pressSequentially('I hold', { delay: 20 });
    await here(page).getByText('Typing on your other device…').waitFor();
    await shot(page, 'desktop-live-typing');
    await composer(phone.page).fill('');
    await here(page).getByText('Also open on your other device').waitFor();
    await mark(phone.page);
    await mark(page);
  });

  test("a turn played on one streams into the other, and lands there without a reload", async () => {
    const { page } = desk;
    await composer(page).fill('I light the lantern');
    await composer(page).press('Enter');

    const streaming = remote(phone.page);
    await streaming.getByText('Scene 1.').waitFor();
    await streaming.getByText('From your other device · the narrator is writing…').waitFor();
    const partial = await streaming.innerText();
    assert.ok(!partial.includes('distant water'), 'the other device sees the tokens as they come');
    await shot(phone.page, 'phone-live-streaming');
    // The watching device does not offer to play while the other's turn runs.
    assert.equal(await phone.page.getByRole('group', { name: 'Choices' }).count(), 0);

    await settled(page);
    await phone.page.locator('article.narrator').getByText('You light the lantern.').waitFor();
    await streaming.waitFor({ state: 'detached' });
    assert.equal(await phone.page.locator('article.player').count(), 1);
    assert.equal(await phone.page.locator('article.narrator').count(), 1);
    await phone.page.getByRole('group', { name: 'Choices' }).getByRole('button').first().waitFor();
    await shot(phone.page, 'phone-live-landed');

    // Now the phone plays, by choice; the desktop watches it stream and land.
    await phone.page.getByRole('group', { name: 'Choices' }).getByRole('button', { name: /Examine the carvings/ }).click();
    await remote(page).getByText('Scene 2.').waitFor();
    await shot(page, 'desktop-live-streaming');
    await settled(phone.page);
    await page.locator('article.narrator').getByText('Scene 2.').waitFor();
    await remote(page).waitFor({ state: 'detached' });
    assert.equal(await page.locator('article.narrator').count(), 2);
    assert.equal(await page.locator('article.player').count(), 2);
    assert.ok(await notReloaded(page));
    assert.ok(await notReloaded(phone.page));
    // What landed was fetched turn by turn, never the whole history again.
    for (const read of phone.reads.slice(1)) assert.ok(Number(read.get('limit')) <= 4, String(read));
  });

  test('a retelling and the telling chosen show on the other device', async () => {
    const { page } = desk;
    await page.getByRole('button', { name: 'Retell' }).click();
    await settled(page);
    const phoneCount = phone.page.getByRole('group', { name: 'Alternative replies' }).locator('.count');
    await phoneCount.getByText('2 / 2').waitFor();

    const chosen = page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().includes('/messages/'));
    await page.locator('body').press('ArrowLeft');
    assert.equal((await chosen).status(), 200);
    await phoneCount.getByText('1 / 2').waitFor();
    assert.equal(await phone.page.locator('article.narrator').count(), 2);

    // Renamed elsewhere (here by a plain API call, as a script or the terminal would).
    await page.evaluate(async (id) => {
      const token = decodeURIComponent(/(?:^|;\s*)tw_csrf=([^;]+)/.exec(document.cookie)?.[1] ?? '');
      const response = await fetch(`/api/v1/sessions/${id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', 'x-csrf-token': token },
        body: JSON.stringify({ title: 'The Lantern Road, by night' }),
      });
      if (!response.ok) throw new Error(`rename: ${response.status}`);
    }, sessionId);
    await phone.page.getByRole('heading', { name: 'The Lantern Road, by night', level: 1 }).waitFor();
    assert.ok(await notReloaded(phone.page));
  });

  test('a dropped connection reconnects and catches up with what it missed', async () => {
    const { page } = desk;
    const narrators = await phone.page.locator('article.narrator').count();
    await phone.context.setOffline(true);
    await phone.page.evaluate(() => window.__sockets.at(-1)?.close());
    await here(phone.page).getByText('Reconnecting…').waitFor();
    await shot(phone.page, 'phone-live-reconnecting');

    await composer(page).fill('I follow the sound of water');
    await composer(page).press('Enter');
    await settled(page);
    await page.getByText('You follow the sound of water.').waitFor();
    await page.waitForTimeout(300);
    assert.equal(await phone.page.getByText('You follow the sound of water.').count(), 0, 'offline, nothing came');

    await phone.context.setOffline(false);
    await phone.page.locator('article.narrator').getByText('You follow the sound of water.').waitFor();
    await here(phone.page).locator('.face').waitFor();
    assert.equal(await phone.page.locator('article.narrator').count(), narrators + 1, 'each turn once');
    assert.equal(await phone.page.getByText('You follow the sound of water.').count(), 1);
    assert.ok(await notReloaded(phone.page));

    // And the live channel is live again: the next turn streams in as before.
    await composer(page).fill('I wade in');
    await composer(page).press('Enter');
    await remote(phone.page).getByText(/Scene \d+\./).waitFor();
    await settled(page);
    await phone.page.locator('article.narrator').getByText('You wade in.').waitFor();
    await shot(phone.page, 'phone-live-caught-up');
    await shot(page, 'desktop-live-caught-up');
    assert.deepEqual(desk.errors, []);
    assert.deepEqual(phone.errors, []);
  });
});
