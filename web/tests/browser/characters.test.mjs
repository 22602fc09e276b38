// The character screens in a real headless Chromium against the real server: a PNG
// card imported, its fields and greetings edited and kept across a reload, a chat
// opened by the greeting chosen, the card exported as JSON and PNG, the character
// deleted after asking; at a desktop and a phone viewport, each screen saved as a
// screenshot and checked with axe-core.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { ARGS, AXE, SHOTS, VIEWPORTS } from './support.mjs';

const WREN = resolve(import.meta.dirname, '../../../tests/data/cards/wren.png');

mkdirSync(SHOTS, { recursive: true });
const FILES = mkdtempSync(join(tmpdir(), 'taleweaver-characters-'));
const WREN_FILE = join(FILES, 'Wren.png');
copyFileSync(WREN, WREN_FILE);

const DESCRIPTION = 'Wren pilots the night ferry and hums old river songs to keep the fog away.';
const FOG = 'The fog is thick tonight. Stay close to the lantern.';
const BELL = 'The bell rings twice: last crossing. Hop aboard.';

/** Serious and critical accessibility violations on the page as it is now (axe-core). */
async function axeViolations(page) {
  await page.addScriptTag({ content: AXE });
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  });
}

/** The card JSON in a PNG's tEXt chunk (`ccv3` first, then `chara`). */
function cardInPng(data) {
  assert.deepEqual([...data.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], 'a PNG signature');
  const chunks = {};
  for (let i = 8; i < data.length; ) {
    const length = data.readUInt32BE(i);
    const type = data.toString('latin1', i + 4, i + 8);
    if (type === 'tEXt') {
      const body = data.subarray(i + 8, i + 8 + length);
      const nul = body.indexOf(0);
      chunks[body.toString('latin1', 0, nul)] = body.toString('latin1', nul + 1);
    }
    i += 12 + length;
  }
  const text = chunks.ccv3 ?? chunks.chara;
  assert.ok(text, 'the PNG carries a card');
  return JSON.parse(Buffer.from(text, 'base64').toString('utf8'));
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ARGS,
    headless: true,
  });
});
after(async () => {
  await browser?.close();
  rmSync(FILES, { recursive: true, force: true });
});

async function open(server, viewport, { scheme = 'light', axe = false, path = '/' } = {}) {
  const context = await browser.newContext({
    bypassCSP: axe, // only to inject axe-core
    viewport: VIEWPORTS[viewport],
    colorScheme: scheme,
    serviceWorkers: 'block',
    deviceScaleFactor: 1,
    isMobile: viewport === 'phone',
    hasTouch: viewport === 'phone',
    acceptDownloads: true,
  });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (msg) => {
    // A refused request is logged by the browser; the tests that make one expect it.
    if (msg.type() === 'error' && !/status of 4\d\d/.test(msg.text())) errors.push(msg.text());
  });
  await page.goto(server.url + path);
  return { context, page, errors };
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

const editor = (page) => page.getByRole('form', { name: 'Character card' });

/** Click a download link and answer the file's suggested name and bytes. */
async function download(page, link) {
  const [file] = await Promise.all([page.waitForEvent('download'), link.click()]);
  return { name: file.suggestedFilename(), data: readFileSync(await file.path()) };
}

for (const viewport of ['desktop', 'phone']) {
  describe(`characters at the ${viewport} viewport`, () => {
    let server;
    let characterUrl;
    before(async () => {
      server = await startServer();
    });
    after(async () => {
      await server?.stop();
    });

    test('imports a card, edits its fields and greetings, and keeps them across a reload', async () => {
      const { context, page, errors } = await open(server, viewport);
      await page.getByRole('link', { name: 'Characters' }).click();
      await page.getByRole('heading', { name: 'Characters', level: 1 }).waitFor();
      await page.getByLabel('Character card files').setInputFiles(WREN_FILE);
      await page.getByRole('status').getByText('Imported Wren.').waitFor();
      await page.locator('ul.grid img').first().waitFor();
      await shot(page, `${viewport}-characters-gallery`);

      // A second import of the same card asks what to do.
      await page.getByLabel('Character card files').setInputFiles(WREN_FILE);
      const again = page.getByRole('group', { name: 'Imported before' });
      await again.getByText(/Wren\.png/).waitFor();
      await again.getByRole('button', { name: 'Skip' }).click();
      await page.getByRole('status').getByText('Wren was already here; nothing changed.').waitFor();
      assert.equal(await page.locator('ul.grid li').count(), 1);

      await page.locator('ul.grid').getByRole('button', { name: /Wren/ }).click();
      const dialog = page.getByRole('dialog', { name: 'Wren' });
      await dialog.getByRole('button', { name: 'Edit card' }).click();
      await page.getByRole('heading', { name: 'Wren', level: 1 }).waitFor();
      assert.match(page.url(), /\/characters\/[0-9a-f-]+$/);
      characterUrl = page.url();
      const form = editor(page);
      assert.equal(await form.getByLabel('Name', { exact: true }).inputValue(), 'Wren');
      await shot(page, `${viewport}-character-editor`);

      await form.getByLabel('Description').fill(DESCRIPTION);
      await form.getByLabel('Personality').fill('calm, curious, kind, a little wry');
      await form.getByRole('button', { name: 'Add a greeting' }).click();
      await form.getByRole('textbox', { name: 'Alternate greeting 1', exact: true }).fill(FOG);
      await form.getByRole('button', { name: 'Add a greeting' }).click();
      await form.getByRole('textbox', { name: 'Alternate greeting 2', exact: true }).fill(BELL);
      await form.getByRole('button', { name: 'Move alternate greeting 2 up' }).click();
      assert.equal(await form.getByRole('textbox', { name: 'Alternate greeting 1', exact: true }).inputValue(), BELL);
      assert.equal(await form.getByRole('textbox', { name: 'Alternate greeting 2', exact: true }).inputValue(), FOG);
      await form.getByRole('button', { name: 'Add a greeting' }).click();
      await form.getByRole('textbox', { name: 'Alternate greeting 3', exact: true }).fill('To be removed.');
      await form.getByRole('button', { name: 'Remove alternate greeting 3' }).click();
      assert.equal(await form.getByRole('textbox', { name: 'Alternate greeting 3', exact: true }).count(), 0);

      await form.getByText('Card details: tags, creator, version, notes').click();
      await form.getByLabel('Tags').fill('night');
      await form.getByLabel('Tags').press('Enter');
      await form.getByRole('button', { name: 'Remove tag ferry' }).click();
      await form.getByLabel('Version').fill('1.1');
      await form.getByText('Prompt overrides').click();
      await form.getByLabel('System prompt').fill('Write as {{char}}, briefly.');
      await form.getByText('Unsaved changes').waitFor();
      await form.getByRole('textbox', { name: 'Alternate greeting 2', exact: true }).scrollIntoViewIfNeeded();
      await shot(page, `${viewport}-character-greetings`);

      // Leaving with unsaved changes asks first.
      await page.getByRole('button', { name: 'All characters' }).click();
      const leave = page.getByRole('dialog', { name: 'Leave without saving?' });
      await leave.waitFor();
      await shot(page, `${viewport}-character-leave`);
      await leave.getByRole('button', { name: 'Keep editing' }).click();
      await leave.waitFor({ state: 'detached' });
      assert.equal(page.url(), characterUrl);
      // The browser's own Back asks too, and keeps the place while it does.
      await page.goBack();
      await leave.waitFor();
      assert.equal(page.url(), characterUrl);
      await leave.getByRole('button', { name: 'Keep editing' }).click();
      await leave.waitFor({ state: 'detached' });

      // A refusal from the server shows by the field it names (problem+json).
      await page.route('**/api/v1/characters/*', (route) =>
        route.request().method() === 'PATCH'
          ? route.fulfill({
              status: 422,
              contentType: 'application/problem+json',
              body: JSON.stringify({
                type: 'about:blank',
                title: 'Invalid input',
                status: 422,
                detail: 'description: String should have at most 10 characters',
                errors: [{ loc: ['body', 'description'], msg: 'String should have at most 10 characters' }],
              }),
            })
          : route.fallback(),
      );
      await form.getByRole('button', { name: 'Save changes' }).click();
      await form.getByRole('alert').getByText('Not saved: check Description.').waitFor();
      await form.getByText('String should have at most 10 characters').waitFor();
      assert.equal(await form.getByLabel('Description').getAttribute('aria-invalid'), 'true');
      await form.getByLabel('Description').scrollIntoViewIfNeeded();
      await shot(page, `${viewport}-character-error`);
      await page.unroute('**/api/v1/characters/*');

      await form.getByRole('button', { name: 'Save changes' }).click();
      await form.getByRole('status').getByText('Saved.').waitFor();
      assert.equal(await form.getByRole('alert').count(), 0);

      await page.reload();
      const kept = editor(page);
      await kept.getByLabel('Description').waitFor();
      assert.equal(await kept.getByLabel('Description').inputValue(), DESCRIPTION);
      assert.equal(await kept.getByLabel('Personality').inputValue(), 'calm, curious, kind, a little wry');
      assert.equal(await kept.getByRole('textbox', { name: 'Alternate greeting 1', exact: true }).inputValue(), BELL);
      assert.equal(await kept.getByRole('textbox', { name: 'Alternate greeting 2', exact: true }).inputValue(), FOG);
      await kept.getByText('Card details: tags, creator, version, notes').click();
      await kept.getByRole('button', { name: 'Remove tag night' }).waitFor();
      assert.equal(await kept.getByRole('button', { name: 'Remove tag ferry' }).count(), 0);
      assert.equal(await kept.getByLabel('Version').inputValue(), '1.1');
      await kept.getByText('Prompt overrides').click();
      assert.equal(await kept.getByLabel('System prompt').inputValue(), 'Write as {{char}}, briefly.');
      await shot(page, `${viewport}-character-saved`);
      assert.deepEqual(errors, []);
      await context.close();
    });

    test('exports the card as JSON and PNG downloads', async () => {
      const { context, page } = await open(server, viewport, { path: new URL(characterUrl).pathname });
      await page.getByRole('heading', { name: 'Wren', level: 1 }).waitFor();
      await editor(page).getByRole('button', { name: 'Export' }).click();
      const exporting = page.getByRole('dialog', { name: 'Export Wren' });
      await exporting.getByRole('link', { name: /CHARX/ }).waitFor();
      await shot(page, `${viewport}-character-export`);

      const asJson = await download(page, exporting.getByRole('link', { name: /JSON/ }));
      assert.equal(asJson.name, 'Wren.json');
      const card = JSON.parse(asJson.data.toString('utf8'));
      assert.equal(card.spec, 'chara_card_v3');
      assert.equal(card.data.description, DESCRIPTION);
      assert.deepEqual(card.data.alternate_greetings, [BELL, FOG]);
      assert.deepEqual(card.data.tags, ['river', 'night']);

      const asPng = await download(page, exporting.getByRole('link', { name: /PNG card/ }));
      assert.equal(asPng.name, 'Wren.png');
      const inside = cardInPng(asPng.data);
      assert.equal(inside.data.name, 'Wren');
      assert.equal(inside.data.description, DESCRIPTION);
      assert.deepEqual(inside.data.alternate_greetings, [BELL, FOG]);
      await exporting.getByRole('button', { name: 'Close' }).click();
      await context.close();
    });

    test('starts a chat with the greeting chosen', async () => {
      const { context, page } = await open(server, viewport, { path: new URL(characterUrl).pathname });
      await page.getByRole('heading', { name: 'Wren', level: 1 }).waitFor();
      await editor(page).getByRole('button', { name: 'Chat with Wren' }).click();
      const dialog = page.getByRole('dialog', { name: 'Wren' });
      const choices = dialog.getByRole('group', { name: 'Choose how the chat opens' });
      await choices.getByText(FOG).waitFor();
      assert.equal(await choices.getByRole('radio').count(), 3);
      await choices.getByText(FOG).click();
      assert.ok(await choices.getByRole('radio', { name: FOG }).isChecked());
      await shot(page, `${viewport}-character-chat`);
      await dialog.getByRole('button', { name: 'Chat with Wren' }).click();
      await page.locator('article.narrator').getByText(FOG).waitFor();
      assert.match(page.url(), /\/s\/[^/]+$/);
      await context.close();
    });

    test('deletes the character after asking', async () => {
      const { context, page } = await open(server, viewport, { path: new URL(characterUrl).pathname });
      await page.getByRole('heading', { name: 'Wren', level: 1 }).waitFor();
      await page.getByRole('button', { name: 'Delete character' }).click();
      const confirm = page.getByRole('dialog', { name: 'Delete this character?' });
      await confirm.getByText(/will be deleted from this workspace/).waitFor();
      await shot(page, `${viewport}-character-delete-confirm`);
      await confirm.getByRole('button', { name: 'Keep it' }).click();
      await confirm.waitFor({ state: 'detached' });
      await page.getByRole('heading', { name: 'Wren', level: 1 }).waitFor();
      await page.getByRole('button', { name: 'Delete character' }).click();
      await confirm.getByRole('button', { name: 'Delete forever' }).click();
      await page.getByRole('heading', { name: 'Characters', level: 1 }).waitFor();
      assert.match(page.url(), /\/characters$/);
      await page.getByRole('status').getByText('Deleted Wren.').waitFor();
      await page.getByText('No characters yet').waitFor();
      const gone = await page.evaluate(async (url) => (await fetch(`/api/v1${new URL(url).pathname}`)).status, characterUrl);
      assert.equal(gone, 404);
      await context.close();
    });

    test('axe finds no serious accessibility violation on the character screens', async () => {
      // A fresh card for these checks (the one above was deleted).
      const seed = await open(server, viewport, { path: '/characters' });
      await seed.page.getByLabel('Character card files').setInputFiles(WREN_FILE);
      await seed.page.getByRole('status').getByText('Imported Wren.').waitFor();
      await seed.context.close();
      for (const scheme of ['light', 'dark']) {
        const { context, page } = await open(server, viewport, { scheme, axe: true, path: '/characters' });
        const problems = [];
        await page.locator('ul.grid li').first().waitFor();
        problems.push(...(await axeViolations(page)));
        if (scheme === 'dark') await shot(page, `${viewport}-characters-gallery-dark`);
        await page.locator('ul.grid').getByRole('button', { name: /Wren/ }).click();
        const dialog = page.getByRole('dialog', { name: 'Wren' });
        await dialog.getByRole('button', { name: 'Chat with Wren' }).waitFor();
        problems.push(...(await axeViolations(page)));
        await dialog.getByRole('button', { name: 'Edit card' }).click();
        const form = editor(page);
        await form.getByLabel('Description').waitFor();
        for (const summary of ['Example dialogue', 'Prompt overrides', 'Card details: tags, creator, version, notes', 'In Taleweaver: picture, 3D model, lorebook']) {
          await form.locator('summary', { hasText: summary }).click();
        }
        await form.getByRole('button', { name: 'Add a greeting' }).click();
        problems.push(...(await axeViolations(page)));
        if (scheme === 'dark') await shot(page, `${viewport}-character-editor-dark`);
        await form.getByRole('button', { name: 'Discard' }).click();
        await form.getByRole('button', { name: 'Export' }).click();
        await page.getByRole('dialog', { name: 'Export Wren' }).waitFor();
        problems.push(...(await axeViolations(page)));
        assert.deepEqual(problems, [], `${scheme}: ${problems.join('; ')}`);
        await context.close();
      }
    });
  });
}
