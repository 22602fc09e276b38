// Journeys through the web app in a real headless Chromium (Debian's package, driven
// by playwright-core), against the real server with the scripted model. Each main
// screen is saved as a screenshot at a desktop and a phone viewport.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { ARGS, SHOTS, VIEWPORTS, axeViolations } from './support.mjs';

const CHAT = resolve(import.meta.dirname, '../../../tests/data/chats/seraphina.jsonl');

mkdirSync(SHOTS, { recursive: true });

/** Serious and critical accessibility violations on the page as it is now (axe-core). */

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
});

async function open(server, viewport, { scheme = 'light', axe = false } = {}) {
  const context = await browser.newContext({
    bypassCSP: axe, // only to inject axe-core; the app itself runs under its CSP elsewhere
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
    if (msg.type() === 'error') errors.push(msg.text());
  });
  await page.goto(server.url + '/');
  return { context, page, errors };
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

const composer = (page) => page.locator('#composer');
const live = (page) => page.locator('.live');

/** Wait until no reply is streaming (the send button is back). */
async function settled(page) {
  await page.getByRole('button', { name: 'Stop the reply' }).waitFor({ state: 'detached' });
}

async function newStory(page, title, premise) {
  await page.getByRole('button', { name: 'New', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Start a new session' });
  await dialog.getByLabel('Title').fill(title);
  if (premise) await dialog.getByLabel(/Premise/).fill(premise);
  return dialog;
}

async function say(page, text) {
  await composer(page).fill(text);
  await composer(page).press('Enter');
  await settled(page);
}

for (const viewport of ['desktop', 'phone']) {
  describe(`single-user play at the ${viewport} viewport`, () => {
    let server;
    before(async () => {
      server = await startServer();
    });
    after(async () => {
      await server?.stop();
    });

    test('starts a story and plays three turns by text and by choice', async () => {
      const { context, page, errors } = await open(server, viewport);
      await page.getByRole('heading', { name: 'Where shall we begin?' }).or(page.getByText('No sessions yet')).first().waitFor();
      await shot(page, `${viewport}-home`);
      const dialog = await newStory(page, 'The Drowned Library', 'A flooded archive beneath the city');
      await shot(page, `${viewport}-new-session`);
      await dialog.getByRole('button', { name: 'Start' }).click();
      await page.getByRole('heading', { name: 'The Drowned Library', level: 2 }).waitFor();
      assert.match(page.url(), /\/s\/[0-9a-f]+$/);
      await shot(page, `${viewport}-empty-story`);

      // Tokens arrive while the reply is still being written.
      await composer(page).fill('I light the lantern');
      await composer(page).press('Enter');
      await live(page).getByText('Scene 1.').waitFor();
      const partial = await live(page).innerText();
      assert.ok(!partial.includes('distant water'), 'the first tokens paint before the reply is complete');
      await settled(page);
      await page.getByText('You light the lantern.').waitFor();

      const choices = page.getByRole('group', { name: 'Choices' });
      await choices.getByRole('button').first().waitFor();
      assert.equal(await choices.getByRole('button').count(), 3);
      await choices.getByRole('button', { name: /Examine the carvings/ }).click();
      await settled(page);
      await page.getByText('Scene 2.').waitFor();

      await say(page, 'I call out into the dark');
      await page.getByText('You call out into the dark.').waitFor();
      assert.equal(await page.locator('article.player').count(), 3);
      assert.equal(await page.locator('article.narrator').count(), 3);
      await shot(page, `${viewport}-play`);
      assert.deepEqual(errors, []);
      await context.close();
    });

    test('stops a reply mid-way and keeps nothing of it', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByRole('link', { name: /The Drowned Library/ }).click();
      await page.getByText('You call out into the dark.').waitFor();
      await composer(page).fill('I run for the stairs');
      await composer(page).press('Enter');
      await live(page).getByText('Scene').waitFor();
      await shot(page, `${viewport}-streaming`);
      await page.getByRole('button', { name: 'Stop the reply' }).click();
      await page.getByRole('status').getByText('You stopped the reply').waitFor();
      assert.equal(await page.locator('article.narrator').count(), 3);
      await page.reload();
      await page.getByText('You call out into the dark.').waitFor();
      assert.equal(await page.locator('article.narrator').count(), 3, 'the stopped turn left nothing behind');
      await context.close();
    });

    test('retells the last reply and swipes between tellings with the arrow keys', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByRole('link', { name: /The Drowned Library/ }).click();
      await page.getByText('You call out into the dark.').waitFor();
      await page.getByRole('button', { name: 'Retell' }).click();
      await settled(page);
      const count = page.getByRole('group', { name: 'Alternative replies' }).locator('.count');
      await count.getByText('2 / 2').waitFor();
      const chosen = () => page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().includes('/messages/'));
      let saved = chosen();
      await page.locator('body').press('ArrowLeft');
      await count.getByText('1 / 2').waitFor();
      assert.equal((await saved).status(), 200);
      // The choice is the story's, not the screen's: it survives a reload.
      await page.reload();
      await count.getByText('1 / 2').waitFor();
      saved = chosen();
      await page.locator('body').press('ArrowRight');
      await count.getByText('2 / 2').waitFor();
      assert.equal((await saved).status(), 200);

      await page.locator('article.narrator').last().hover();
      await page.getByRole('button', { name: /Why the narrator wrote turn 3/ }).click();
      const why = page.getByRole('dialog', { name: 'Why this reply?' });
      await why.getByText('Instructions').waitFor();
      await why.getByText(/Earlier messages/).waitFor();
      await shot(page, `${viewport}-context`);
      await why.getByRole('button', { name: 'Close' }).click();
      await context.close();
    });

    test('edits the last line with the up arrow and the narrator retells from it', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByRole('link', { name: /The Drowned Library/ }).click();
      await page.getByText('You call out into the dark.').waitFor();
      await composer(page).press('ArrowUp');
      assert.equal(await composer(page).inputValue(), 'I call out into the dark');
      await page.getByText('Editing your last line').waitFor();
      await composer(page).fill('I whisper into the dark');
      await composer(page).press('Enter');
      await settled(page);
      await page.getByText('You whisper into the dark.').waitFor();
      assert.equal(await page.locator('article.player').count(), 3);
      assert.equal(await page.getByText('I call out into the dark', { exact: true }).count(), 0);
      await context.close();
    });

    test('continues after a reload, then branches from an earlier turn', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByRole('link', { name: /The Drowned Library/ }).click();
      await page.getByText('You whisper into the dark.').waitFor();
      const url = page.url();
      await page.reload();
      assert.equal(page.url(), url, 'the open session survives a reload');
      await page.getByText('You whisper into the dark.').waitFor();
      if (viewport === 'phone') {
        // The place read survives a reload: scrolled back to the start, it opens there.
        await page.locator('.scroller').evaluate((el) => el.scrollTo(0, 0));
        await page.waitForTimeout(400);
        await page.reload();
        await page.locator('article.narrator').first().waitFor();
        await page.waitForTimeout(100);
        assert.ok((await page.locator('.scroller').evaluate((el) => el.scrollTop)) < 80, 'reopened where the reader was');
        await page.locator('.scroller').evaluate((el) => el.scrollTo(0, el.scrollHeight));
        await page.waitForTimeout(400);
      }
      await page.getByRole('button', { name: 'Continue' }).click();
      await settled(page);
      assert.equal(await page.locator('article.narrator').count(), 4);

      await page.locator('article.narrator').first().hover();
      await page.getByRole('button', { name: 'Branch a new session from turn 1' }).click();
      await page.getByRole('heading', { name: /branch at 1/, level: 1 }).waitFor();
      assert.notEqual(page.url(), url);
      await page.locator('article.narrator').first().waitFor();
      assert.equal(await page.locator('article.narrator').count(), 1);
      await context.close();
    });

    test('finds a message by full-text search and opens it in context', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByLabel('Search sessions and messages').fill('lantern');
      const hit = page.locator('a.hit').first();
      await hit.waitFor();
      assert.match(await hit.innerText(), /lantern/i);
      await shot(page, `${viewport}-search`);
      await hit.click();
      await page.locator('article.highlight').first().waitFor();
      await context.close();
    });

    test('renames, pins, archives and deletes sessions from the sidebar', async () => {
      const { context, page } = await open(server, viewport);
      const options = (name) => page.getByRole('button', { name: `Options for ${name}`, exact: true });
      await options('The Drowned Library').click();
      await page.getByRole('menuitem', { name: 'Rename' }).click();
      await page.getByLabel('New title').fill('The Sunken Archive');
      await page.getByLabel('New title').press('Enter');
      await page.getByRole('link', { name: /The Sunken Archive/ }).waitFor();

      await options('The Sunken Archive').click();
      await page.getByRole('menuitem', { name: 'Pin to top' }).click();
      await page.getByText('Pinned', { exact: true }).waitFor();
      await shot(page, `${viewport}-sidebar`);

      const branch = page.getByRole('link', { name: /branch at 1/ });
      const branchTitle = (await branch.locator('.title').innerText()).trim();
      await options(branchTitle).click();
      await page.getByRole('menuitem', { name: 'Archive' }).click();
      await branch.waitFor({ state: 'detached' });
      await page.getByRole('button', { name: 'Archived' }).click();
      await page.getByRole('link', { name: /branch at 1/ }).waitFor();

      await options(branchTitle).click();
      await page.getByRole('menuitem', { name: 'Delete…' }).click();
      const confirm = page.getByRole('dialog', { name: 'Delete this session?' });
      await shot(page, `${viewport}-delete-confirm`);
      await confirm.getByRole('button', { name: 'Keep it' }).click();
      await page.getByRole('link', { name: /branch at 1/ }).waitFor();
      await options(branchTitle).click();
      await page.getByRole('menuitem', { name: 'Delete…' }).click();
      await confirm.getByRole('button', { name: 'Delete forever' }).click();
      await page.getByText('Nothing archived.').waitFor();
      await context.close();
    });

    test('shows a crisis notice with care, in the flow of the story', async () => {
      const { context, page } = await open(server, viewport);
      const dialog = await newStory(page, 'Night Harbour');
      await dialog.getByRole('button', { name: 'Start' }).click();
      await page.getByRole('heading', { name: 'Night Harbour', level: 2 }).waitFor();
      await say(page, 'I want to kill myself tonight');
      const care = page.getByRole('complementary', { name: 'A note from Taleweaver' });
      await care.waitFor();
      assert.match(await care.innerText(), /you don't have to carry this alone/i);
      assert.equal(await page.getByRole('alert').count(), 0, 'a crisis is never shown as an error');
      await shot(page, `${viewport}-crisis`);
      await context.close();
    });

    test('imports a card by drag and drop and chats with the greeting chosen', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByRole('link', { name: 'Characters' }).click();
      await page.getByRole('heading', { name: 'Characters' }).waitFor();
      const card = {
        spec: 'chara_card_v2',
        spec_version: '2.0',
        data: {
          name: 'Mara',
          description: 'A retired lighthouse keeper with a dry wit.',
          personality: 'dry, warm',
          scenario: 'A stormy night at the lighthouse.',
          first_mes: 'Evening, {{user}}. The lamp is lit.',
          mes_example: '',
          alternate_greetings: ['Oh! A visitor, at this hour?'],
          tags: ['cozy'],
          creator_notes: '',
          system_prompt: '',
          post_history_instructions: '',
          creator: 'tests',
          character_version: '1',
          extensions: { custom: { kept: true } },
        },
      };
      const transfer = await page.evaluateHandle((json) => {
        const dt = new DataTransfer();
        dt.items.add(new File([json], 'mara.json', { type: 'application/json' }));
        return dt;
      }, JSON.stringify(card));
      await page.dispatchEvent('[aria-label="Import character cards"]', 'drop', { dataTransfer: transfer });
      await page.getByRole('status').getByText('Imported Mara.').waitFor();
      await shot(page, `${viewport}-characters`);
      await page.locator('ul.grid').getByRole('button', { name: /Mara/ }).click();
      const dialog = page.getByRole('dialog', { name: 'Mara' });
      await dialog.getByText('Oh! A visitor, at this hour?').click();
      await shot(page, `${viewport}-character`);
      await dialog.getByRole('button', { name: 'Chat with Mara' }).click();
      await page.locator('article.narrator').getByText('Oh! A visitor, at this hour?').waitFor();
      await composer(page).fill('Hello Mara');
      await composer(page).press('Enter');
      await settled(page);
      assert.equal(await page.locator('article.narrator').count(), 2);
      await context.close();
    });

    test('imports a SillyTavern chat and continues it', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByRole('link', { name: 'Characters' }).click();
      await page.getByLabel('SillyTavern chat file').setInputFiles(CHAT);
      await page.locator('article.narrator').first().waitFor();
      const before = await page.locator('article.narrator').count();
      await say(page, 'I sit down by the fire');
      assert.equal(await page.locator('article.narrator').count(), before + 1);
      await context.close();
    });

    test('accepts an extraction and finds it on the entity page', async () => {
      const { context, page } = await open(server, viewport);
      await page.getByRole('link', { name: 'Worlds' }).click();
      await page.getByLabel('Name').fill('Eldoria');
      await page.getByRole('button', { name: 'Create world' }).click();
      await page.getByRole('tab', { name: /To review/ }).waitFor();
      await page.goto(server.url + '/');
      const dialog = await newStory(page, 'Smugglers of Port Sable');
      await dialog.getByRole('combobox', { name: /World/ }).selectOption({ label: 'Eldoria' });
      await dialog.getByRole('button', { name: 'Start' }).click();
      await page.getByRole('heading', { name: 'Smugglers of Port Sable', level: 2 }).waitFor();
      await say(page, 'Mira Vance lives in Port Sable.');
      await page.goto(server.url + '/worlds');
      await page.getByRole('link', { name: /Eldoria/ }).click();
      const relation = page.getByRole('article', { name: /Vance lives in Port Sable$/ });
      await relation.waitFor().catch(async (e) => {
        await shot(page, `${viewport}-review-failed`);
        throw e;
      });
      await shot(page, `${viewport}-review`);
      await relation.getByRole('button', { name: 'Accept' }).click();
      await page.getByRole('status').getByText(/Accepted/).waitFor();
      await page.getByRole('tab', { name: /Canon/ }).click();
      await page.getByRole('link', { name: /Vance/ }).click();
      await page.getByRole('heading', { name: /Vance/, level: 1 }).waitFor();
      await page.getByText('lives in').waitFor().catch(async (e) => {
        await shot(page, `${viewport}-entity-failed`);
        throw e;
      });
      await page.getByRole('link', { name: 'Port Sable', exact: true }).waitFor();
      await shot(page, `${viewport}-entity`);
      await context.close();
    });

    test('axe finds no serious accessibility violation on the main screens', async () => {
      for (const scheme of ['light', 'dark']) {
        const { context, page } = await open(server, viewport, { scheme, axe: true });
        await page.getByRole('button', { name: 'New', exact: true }).waitFor();
        const problems = [];
        if (viewport === 'desktop') {
          await page.getByRole('heading', { name: 'Where shall we begin?' }).waitFor();
          problems.push(...(await axeViolations(page)));
        }
        await page.getByRole('link', { name: /The Sunken Archive/ }).click();
        await page.locator('article.narrator').first().waitFor();
        problems.push(...(await axeViolations(page)));
        await page.goto(server.url + '/characters');
        await page.locator('ul.grid li').first().waitFor();
        problems.push(...(await axeViolations(page)));
        await page.goto(server.url + '/worlds');
        await page.getByRole('link', { name: /Eldoria/ }).click();
        await page.getByRole('tab', { name: /To review/ }).waitFor();
        problems.push(...(await axeViolations(page)));
        assert.deepEqual(problems, [], `${scheme}: ${problems.join('; ')}`);
        await context.close();
      }
    });

    test('looks calm in the dark too', async () => {
      const { context, page } = await open(server, viewport, { scheme: 'dark' });
      await page.getByRole('link', { name: /The Sunken Archive/ }).click();
      await page.locator('article.narrator').first().waitFor();
      await shot(page, `${viewport}-play-dark`);
      await context.close();
    });
  });
}

describe('accounts when login is required', () => {
  let server;
  before(async () => {
    server = await startServer({ TALEWEAVER_REQUIRE_LOGIN: 'true' });
  });
  after(async () => {
    await server?.stop();
  });

  test('sets up the first administrator, signs in, and refuses another account their session', async () => {
    const token = /one-time token: (\S+)/.exec(server.output())?.[1];
    assert.ok(token, 'the server printed a setup token');
    const admin = await open(server, 'desktop');
    await admin.page.getByRole('heading', { name: 'Welcome back' }).waitFor();
    await shot(admin.page, 'desktop-sign-in');
    await admin.page.getByRole('button', { name: /First time here/ }).click();
    await admin.page.getByLabel('Setup token').fill(token);
    await admin.page.getByLabel('Email').fill('ada@example.com');
    await admin.page.getByLabel('Password').fill('correct horse battery');
    await admin.page.getByRole('button', { name: 'Create administrator' }).click();
    await admin.page.getByRole('button', { name: 'New', exact: true }).waitFor();
    const dialog = await newStory(admin.page, "Ada's Secret");
    await dialog.getByRole('button', { name: 'Start' }).click();
    await admin.page.getByRole('heading', { name: "Ada's Secret", level: 2 }).waitFor();
    const secretUrl = admin.page.url();
    const created = await admin.page.evaluate(async () => {
      const csrf = /tw_csrf=([^;]+)/.exec(document.cookie)?.[1] ?? '';
      const response = await fetch('/api/v1/users', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': decodeURIComponent(csrf) },
        body: JSON.stringify({ email: 'bo@example.com', password: 'another good password' }),
      });
      return response.status;
    });
    assert.equal(created, 201);

    const other = await open(server, 'phone');
    await other.page.getByRole('heading', { name: 'Welcome back' }).waitFor();
    await other.page.getByLabel('Email').fill('bo@example.com');
    await other.page.getByLabel('Password').fill('wrong password');
    await other.page.getByRole('button', { name: 'Sign in' }).click();
    await other.page.getByRole('alert').getByText(/do not match/).waitFor();
    await shot(other.page, 'phone-sign-in-error');
    await other.page.getByLabel('Password').fill('another good password');
    await other.page.getByRole('button', { name: 'Sign in' }).click();
    await other.page.getByText('No sessions yet').waitFor();
    assert.equal(await other.page.getByText("Ada's Secret").count(), 0);
    await other.page.goto(secretUrl);
    await other.page.getByText('This session no longer exists, or you do not have access to it.').waitFor();

    await admin.page.getByRole('button', { name: 'Sign out' }).click();
    await admin.page.getByRole('heading', { name: 'Welcome back' }).waitFor();
    await admin.context.close();
    await other.context.close();
  });
});
