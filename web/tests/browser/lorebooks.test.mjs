// The lorebook screens in a real headless Chromium against the real server: a book
// made, an entry keyed and previewed, a file imported, a book deleted, at a desktop
// and a phone viewport, each screen saved as a screenshot and checked with axe-core.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { ARGS, AXE, SHOTS, VIEWPORTS } from './support.mjs';

const ASTER = resolve(import.meta.dirname, '../../../tests/data/lorebooks/sillytavern_aster.json');

mkdirSync(SHOTS, { recursive: true });
// Files to import, under the names a user's files would have.
const FILES = mkdtempSync(join(tmpdir(), 'taleweaver-lorebooks-'));
const ASTER_FILE = join(FILES, 'Aster.json');
copyFileSync(ASTER, ASTER_FILE);
const NOT_JSON = join(FILES, 'notes.json');
writeFileSync(NOT_JSON, 'these are my notes, not JSON');
const NOT_A_BOOK = join(FILES, 'settings.json');
writeFileSync(NOT_A_BOOK, JSON.stringify({ hello: 'world' }));

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

const results = (page) => page.locator('.results');

for (const viewport of ['desktop', 'phone']) {
  describe(`lorebooks at the ${viewport} viewport`, () => {
    let server;
    before(async () => {
      server = await startServer();
    });
    after(async () => {
      await server?.stop();
    });

    test('creates a book, adds a keyed entry, and previews what activates it', async () => {
      const { context, page, errors } = await open(server, viewport);
      await page.getByRole('link', { name: 'Lorebooks' }).click();
      await page.getByRole('heading', { name: 'Lorebooks', level: 1 }).waitFor();
      await page.getByText('No lorebooks yet').waitFor();
      await shot(page, `${viewport}-lorebooks-empty`);
      await page.getByLabel('Name').fill('The Salt Coast');
      await page.getByRole('button', { name: 'Create lorebook' }).click();
      await page.getByRole('heading', { name: 'The Salt Coast', level: 1 }).waitFor();
      assert.match(page.url(), /\/lorebooks\/[0-9a-f]+$/);
      await page.getByText('No entries yet').waitFor();

      await page.getByRole('button', { name: 'Add entry' }).click();
      const form = page.getByRole('form', { name: 'Entry' });
      await form.getByLabel('Title', { exact: true }).fill('The lighthouse');
      await form.getByLabel('Keys', { exact: true }).fill('lighthouse');
      await form.getByLabel('Keys', { exact: true }).press('Enter');
      await form.getByLabel('Keys', { exact: true }).fill('the lamp, beacon');
      await form.getByLabel('Keys', { exact: true }).press('Enter');
      for (const key of ['lighthouse', 'the lamp', 'beacon']) {
        await form.getByRole('button', { name: `Remove key ${key}` }).waitFor();
      }
      await form.getByRole('button', { name: 'Remove key beacon' }).click();
      await form.getByLabel('Content', { exact: true }).fill('The lighthouse on Gull Point has been dark for nine years; its keeper vanished.');
      await form.getByText('Unsaved changes').waitFor();
      // A look at another tab keeps the unsaved edit.
      await page.getByRole('tab', { name: 'Preview' }).click();
      await page.getByRole('tab', { name: /Entries/ }).click();
      await form.getByText('Unsaved changes').waitFor();
      await form.getByRole('button', { name: 'Save entry' }).click();
      await form.getByRole('status').getByText('Saved.').waitFor();
      await shot(page, `${viewport}-lorebook-entry`);

      // A value the server refuses is not saved, and the form says why.
      await form.getByLabel('Order', { exact: true }).fill('99999999999');
      await form.getByRole('button', { name: 'Save entry' }).click();
      await form.getByRole('alert').getByText(/^Not saved: Order: .*less than 2147483648/).waitFor();
      await shot(page, `${viewport}-lorebook-entry-error`);
      await form.getByLabel('Order', { exact: true }).fill('100');

      // Every other field waits, folded, below the main ones.
      await form.getByText('Matching, chance, groups and timing').click();
      await form.getByLabel('Sticky').fill('2');
      await form.getByLabel('Group names').fill('landmarks');
      await form.getByLabel('Case-sensitive').selectOption({ label: 'No' });
      await form.getByRole('button', { name: 'Save entry' }).click();
      await form.getByRole('status').getByText('Saved.').waitFor();
      await form.getByLabel('Group names').scrollIntoViewIfNeeded();
      await shot(page, `${viewport}-lorebook-entry-advanced`);

      // What the server stored is what the form showed.
      const stored = await page.evaluate(async (url) => {
        const id = url.split('/').pop();
        const book = await (await fetch(`/api/v1/lorebooks/${id}`)).json();
        return book.items[0];
      }, page.url());
      assert.deepEqual(stored.keys, ['lighthouse', 'the lamp']);
      assert.equal(stored.sticky, 2);
      assert.equal(stored.group, 'landmarks');
      assert.equal(stored.case_sensitive, false);

      // The tabs answer the arrow keys.
      await page.getByRole('tab', { name: /Entries/ }).focus();
      await page.keyboard.press('ArrowRight');
      assert.equal(await page.getByRole('tab', { name: 'Preview' }).getAttribute('aria-selected'), 'true');
      const text = page.getByLabel('Story text');
      await text.fill('We row toward the lighthouse as the fog comes in.');
      await results(page).getByText('1 entry activates').waitFor();
      await results(page).getByRole('button', { name: 'The lighthouse' }).waitFor();
      await results(page).getByText("Key 'lighthouse' in player message").waitFor();
      await shot(page, `${viewport}-lorebook-preview`);
      await text.fill('We row out across the calm grey sea.');
      await results(page).getByText('No entry activates').waitFor();
      await results(page).getByText('1 other entry does not match this text.').waitFor();
      await text.fill('Someone has lit the lamp again.');
      await results(page).getByText('1 entry activates').waitFor();
      await results(page).getByRole('button', { name: 'The lighthouse' }).click();
      await page.getByRole('form', { name: 'Entry' }).getByLabel('Title').waitFor();
      assert.equal(await page.getByRole('form', { name: 'Entry' }).getByLabel('Title').inputValue(), 'The lighthouse');

      await page.getByRole('tab', { name: 'Settings' }).click();
      const settings = page.getByRole('tabpanel', { name: 'Settings' });
      await settings.getByLabel('Scan depth (messages)').fill('4');
      await settings.getByRole('button', { name: 'Save settings' }).click();
      await settings.getByRole('status').getByText('Saved.').waitFor();
      await shot(page, `${viewport}-lorebook-settings`);
      assert.deepEqual(errors, []);
      await context.close();
    });

    test('imports a lorebook file, asks about a second import, and searches its entries', async () => {
      const { context, page } = await open(server, viewport, { path: '/lorebooks' });
      const file = page.getByLabel('Lorebook file');
      await file.setInputFiles(NOT_JSON);
      await page.getByRole('alert').getByText('notes.json is not a lorebook file: it is not valid JSON.').waitFor();
      await file.setInputFiles(NOT_A_BOOK);
      await page.getByRole('alert').getByText(/That file could not be imported: not a lorebook/).waitFor();

      await file.setInputFiles(ASTER_FILE);
      await page.getByRole('status').getByText('Imported Aster (26 entries).').waitFor();
      await page.getByRole('link', { name: /Aster/ }).waitFor();
      await shot(page, `${viewport}-lorebooks`);

      await file.setInputFiles(ASTER_FILE);
      const again = page.getByRole('group', { name: 'Imported before' });
      await again.waitFor();
      await shot(page, `${viewport}-lorebooks-reimport`);
      await again.getByRole('button', { name: 'Replace its entries' }).click();
      await page.getByRole('status').getByText('Updated Aster (26 entries).').waitFor();
      assert.equal(await page.getByRole('link', { name: /Aster/ }).count(), 1);

      await page.getByRole('link', { name: /Aster/ }).click();
      await page.getByRole('heading', { name: 'Aster', level: 1 }).waitFor();
      const list = page.getByRole('list', { name: 'Entries' });
      assert.equal(await list.getByRole('listitem').count(), 26);
      await shot(page, `${viewport}-lorebook-entries`);
      await page.getByLabel('Search entries').fill('wyrm');
      await list.getByRole('button', { name: /Dragons/ }).waitFor();
      assert.ok((await list.getByRole('listitem').count()) < 26);
      await list.getByRole('button', { name: /Dragons/ }).click();
      const form = page.getByRole('form', { name: 'Entry' });
      await form.getByRole('button', { name: 'Remove key wyrm' }).waitFor();
      await shot(page, `${viewport}-lorebook-imported-entry`);

      // Leaving an entry with unsaved edits asks first.
      const title = form.getByLabel('Title', { exact: true });
      await title.fill('Dragons of Aster');
      // On a phone the list is behind "All entries"; on a desktop, beside the entry.
      const leaveIt = async () => {
        if (viewport === 'phone') return page.getByRole('button', { name: 'All entries' }).click();
        await page.getByLabel('Search entries').fill('');
        await list.getByRole('button', { name: /The Ember Court/ }).click();
      };
      await leaveIt();
      const leave = page.getByRole('dialog', { name: 'Leave without saving?' });
      await leave.getByRole('button', { name: 'Keep editing' }).click();
      assert.equal(await title.inputValue(), 'Dragons of Aster');
      await leaveIt();
      await leave.getByRole('button', { name: 'Discard changes' }).click();
      if (viewport === 'phone') {
        await page.getByLabel('Search entries').fill('');
        await list.getByRole('button', { name: /The Ember Court/ }).click();
      }
      await page.getByText('Unsaved changes').waitFor({ state: 'detached' });
      assert.equal(await title.inputValue(), 'The Ember Court');

      await page.getByRole('button', { name: 'Export' }).click();
      const exporting = page.getByRole('dialog', { name: 'Export lorebook' });
      const link = exporting.getByRole('link', { name: /SillyTavern World Info/ });
      await shot(page, `${viewport}-lorebook-export`);
      const exported = await page.evaluate(async (href) => (await fetch(href)).json(), await link.getAttribute('href'));
      assert.deepEqual(exported, JSON.parse(readFileSync(ASTER, 'utf8')));
      await exporting.getByRole('button', { name: 'Close' }).click();
      await context.close();
    });

    test('renames a book, deletes an entry and then the book, each after asking', async () => {
      const { context, page } = await open(server, viewport, { path: '/lorebooks' });
      await page.getByRole('link', { name: /The Salt Coast/ }).click();
      await page.getByRole('button', { name: 'Rename' }).click();
      const renaming = page.getByRole('dialog', { name: 'Rename lorebook' });
      await renaming.getByLabel('Name').fill('The Salt Coast, revised');
      await renaming.getByRole('button', { name: 'Rename' }).click();
      await page.getByRole('heading', { name: 'The Salt Coast, revised', level: 1 }).waitFor();

      await page.getByRole('list', { name: 'Entries' }).getByRole('button', { name: /The lighthouse/ }).click();
      await page.getByRole('button', { name: 'Delete entry' }).click();
      const entryConfirm = page.getByRole('dialog', { name: 'Delete this entry?' });
      await entryConfirm.getByRole('button', { name: 'Delete forever' }).click();
      await page.getByText('No entries yet').waitFor();

      await page.getByRole('button', { name: 'Delete lorebook' }).click();
      const confirm = page.getByRole('dialog', { name: 'Delete this lorebook?' });
      await confirm.getByText(/and all its entries will be deleted/).waitFor();
      await shot(page, `${viewport}-lorebook-delete-confirm`);
      await confirm.getByRole('button', { name: 'Keep it' }).click();
      await confirm.waitFor({ state: 'detached' });
      await page.getByRole('heading', { name: 'The Salt Coast, revised', level: 1 }).waitFor();
      await page.getByRole('button', { name: 'Delete lorebook' }).click();
      await confirm.getByRole('button', { name: 'Delete forever' }).click();
      await page.getByRole('heading', { name: 'Lorebooks', level: 1 }).waitFor();
      assert.match(page.url(), /\/lorebooks$/);
      await page.getByRole('status').getByText('Deleted The Salt Coast, revised.').waitFor();
      await page.getByRole('link', { name: /Aster/ }).waitFor();
      assert.equal(await page.getByRole('link', { name: /Salt Coast/ }).count(), 0);
      await context.close();
    });

    test('axe finds no serious accessibility violation on the lorebook screens', async () => {
      for (const scheme of ['light', 'dark']) {
        const { context, page } = await open(server, viewport, { scheme, axe: true, path: '/lorebooks' });
        const problems = [];
        await page.getByRole('link', { name: /Aster/ }).waitFor();
        problems.push(...(await axeViolations(page)));
        await page.getByRole('link', { name: /Aster/ }).click();
        const list = page.getByRole('list', { name: 'Entries' });
        await list.getByRole('listitem').first().waitFor();
        problems.push(...(await axeViolations(page)));
        await list.getByRole('button', { name: /Dragons/ }).click();
        const form = page.getByRole('form', { name: 'Entry' });
        await form.getByText('Matching, chance, groups and timing').click();
        problems.push(...(await axeViolations(page)));
        if (scheme === 'dark') await shot(page, `${viewport}-lorebook-entry-dark`);
        await page.getByRole('tab', { name: 'Preview' }).click();
        await page.getByLabel('Story text').fill('A wyrm sleeps under the Ember Court.');
        await results(page).getByText(/entries activate/).waitFor();
        problems.push(...(await axeViolations(page)));
        if (scheme === 'dark') await shot(page, `${viewport}-lorebook-preview-dark`);
        await page.getByRole('tab', { name: 'Settings' }).click();
        await page.getByRole('button', { name: 'Save settings' }).waitFor();
        problems.push(...(await axeViolations(page)));
        assert.deepEqual(problems, [], `${scheme}: ${problems.join('; ')}`);
        await context.close();
      }
    });
  });
}
