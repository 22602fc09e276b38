// The control room in a real headless Chromium against the real server (scripted
// model): account and API keys, workspace settings, flags, secrets and switching,
// models, spend and budgets, the audit log; members and roles when login is required,
// and what a non-admin is not offered. Screens saved at a desktop and a phone viewport.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { ARGS, AXE, SHOTS, VIEWPORTS } from './support.mjs';

// Budgets, so spend has limits to show (the scripted model costs nothing).
const BUDGETS = { TALEWEAVER_BUDGETS__WORKSPACE_USD: '25', TALEWEAVER_BUDGETS__SESSION_USD: '2' };

mkdirSync(SHOTS, { recursive: true });

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
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ARGS, headless: true });
});
after(async () => {
  await browser?.close();
});

async function open(server, viewport, { scheme = 'light' } = {}) {
  const context = await browser.newContext({
    bypassCSP: true, // only to inject axe-core
    viewport: VIEWPORTS[viewport],
    colorScheme: scheme,
    serviceWorkers: 'block',
    deviceScaleFactor: 1,
    isMobile: viewport === 'phone',
    hasTouch: viewport === 'phone',
  });
  context.setDefaultTimeout(10_000);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (msg) => {
    // A refused request the screen explains (403/404/401) is expected; anything else is not.
    if (msg.type() === 'error' && !/status of (401|403|404|503)/.test(msg.text())) errors.push(msg.text());
  });
  await page.goto(server.url + '/');
  return { context, page, errors };
}

async function shot(page, name) {
  await page.waitForTimeout(150); // let transitions settle
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

async function shotAndAxe(page, name) {
  await shot(page, name);
  assert.deepEqual(await axeViolations(page), [], `axe on ${name}`);
}

async function settled(page) {
  await page.getByRole('button', { name: 'Stop the reply' }).waitFor({ state: 'detached' });
}

async function playStory(page, title) {
  await page.getByRole('button', { name: 'New', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Start a new session' });
  await dialog.getByLabel('Title').fill(title);
  await dialog.getByRole('button', { name: 'Start' }).click();
  await page.getByRole('heading', { name: title, level: 2 }).waitFor();
  await page.locator('#composer').fill('I light the lantern');
  await page.locator('#composer').press('Enter');
  await settled(page);
  await page.getByText('You light the lantern.').waitFor();
}

/** From anywhere: the sidebar's Control room entry (on a phone, via the home screen). */
async function openControl(page, viewport) {
  if (viewport === 'phone' && !(await page.getByRole('link', { name: 'Control room' }).isVisible())) {
    await page.goto(new URL('/', page.url()).href);
  }
  await page.getByRole('link', { name: 'Control room' }).click();
  await page.getByRole('heading', { name: 'Control room', level: 1 }).waitFor();
}

async function tab(page, name) {
  await page.getByRole('navigation', { name: 'Control room' }).getByRole('link', { name }).click();
}

/** A request from the page with the login cookies and CSRF token. */
function call(page, method, path, body) {
  return page.evaluate(
    async ({ method, path, body }) => {
      const csrf = /tw_csrf=([^;]+)/.exec(document.cookie)?.[1] ?? '';
      const response = await fetch(path, {
        method,
        headers: { 'content-type': 'application/json', 'x-csrf-token': decodeURIComponent(csrf) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, body: await response.text() };
    },
    { method, path, body },
  );
}

describe('the control room in single-user mode', () => {
  let server;
  before(async () => {
    server = await startServer(BUDGETS);
  });
  after(async () => {
    await server?.stop();
  });

  test('desktop: name, API keys, secrets, flags, switching workspace, models and spend, audit log', async () => {
    const { context, page, errors } = await open(server, 'desktop');
    await page.getByRole('button', { name: 'New', exact: true }).waitFor();
    await playStory(page, 'The Lantern Road');

    // --- account: the display name, and where it is used
    await openControl(page, 'desktop');
    assert.match(page.url(), /\/control\/account$/);
    await page.getByText('Single-user mode').waitFor();
    assert.equal(await page.getByRole('button', { name: /Sign out/ }).count(), 0, 'no sign-out without a login');
    await page.getByLabel('Display name').fill('Mira');
    await page.getByRole('button', { name: 'Save name' }).click();
    await page.getByRole('status').getByText('Stories now call you Mira.').waitFor();
    await page.locator('.sidebar .account').getByText('Mira').waitFor();
    // {{user}} in a character's greeting is now Mira.
    const card = {
      spec: 'chara_card_v2',
      spec_version: '2.0',
      data: { name: 'Wren', description: 'A ferry keeper.', first_mes: 'Welcome aboard, {{user}}.', personality: '', scenario: '', mes_example: '' },
    };
    const chat = await page.evaluate(async (card) => {
      const csrf = decodeURIComponent(/tw_csrf=([^;]+)/.exec(document.cookie)?.[1] ?? '');
      const made = await fetch('/api/v1/characters/import?filename=wren.json', {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'x-csrf-token': csrf },
        body: JSON.stringify(card),
      }).then((r) => r.json());
      return fetch(`/api/v1/characters/${made.id}/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify({ greeting: 0 }),
      }).then((r) => r.json());
    }, card);
    await page.goto(`${server.url}/s/${chat.id}`);
    await page.getByText('Welcome aboard, Mira.').waitFor();
    await page.goto(`${server.url}/control/account`);
    await page.getByLabel('Display name').waitFor();
    assert.equal(await page.getByLabel('Display name').inputValue(), 'Mira');

    // --- API keys: shown once, copied, used, revoked and refused
    await page.getByLabel('Name', { exact: true }).fill('Backup script');
    await page.getByLabel('Scope').selectOption('write');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByText('Copy it now: it will not be shown again.').waitFor();
    const key = await page.getByLabel('Your new key').inputValue();
    assert.ok(key.length > 20);
    await page.getByRole('button', { name: 'Copy key' }).click();
    await page.getByText(/Copied to the clipboard|the key is selected/).waitFor();
    await shotAndAxe(page, 'desktop-control-account-key');
    const withKey = (k) =>
      page.evaluate(async (k) => (await fetch('/api/v1/sessions', { headers: { authorization: `Bearer ${k}` }, credentials: 'omit' })).status, k);
    assert.equal(await withKey(key), 200, 'the new key lists sessions');
    await page.getByRole('button', { name: 'Done' }).click();
    assert.ok(!(await page.content()).includes(key), 'the key is gone from the page');
    await page.reload();
    await page.getByRole('list', { name: 'Your API keys' }).getByText('Backup script').waitFor();
    assert.ok(!(await page.content()).includes(key), 'and is never shown again');
    await page.getByRole('button', { name: 'Revoke Backup script' }).click();
    await page.getByRole('dialog', { name: 'Revoke this key?' }).getByRole('button', { name: 'Revoke key' }).click();
    await page.getByRole('button', { name: /Show 1 revoked key/ }).waitFor();
    assert.equal(await withKey(key), 401, 'a revoked key is refused');

    // --- workspace: secrets are write-only
    await tab(page, 'Workspace');
    await page.getByRole('heading', { name: 'Secrets' }).waitFor();
    await page.getByLabel('Name', { exact: true }).fill('OPENAI_API_KEY');
    await page.getByLabel('Value').fill('sk-very-secret-123');
    await page.getByRole('button', { name: 'Save secret' }).click();
    await page.getByText('OPENAI_API_KEY saved. It is stored encrypted and will not be shown again.').waitFor();
    assert.equal(await page.getByLabel('Value').inputValue(), '');
    assert.ok(!(await page.content()).includes('sk-very-secret-123'));
    const listed = await call(page, 'GET', '/api/v1/workspaces/local/secrets');
    assert.ok(listed.body.includes('OPENAI_API_KEY') && !listed.body.includes('sk-very-secret-123'));
    await page.getByRole('list', { name: 'Secrets' }).getByText('value hidden').waitFor();

    // --- flags
    await page.getByRole('switch', { name: /World extraction/ }).uncheck();
    await page.getByRole('status').getByText('World extraction is now off in Local.').waitFor();
    const flags = JSON.parse((await call(page, 'GET', '/api/v1/flags')).body);
    assert.equal(flags.find((f) => f.name === 'world_extraction').enabled, false);
    await shotAndAxe(page, 'desktop-control-workspace');

    await page.getByRole('button', { name: 'Delete OPENAI_API_KEY' }).click();
    await page.getByRole('dialog', { name: 'Delete this secret?' }).getByRole('button', { name: 'Delete secret' }).click();
    await page.getByText('No secrets set.').waitFor();

    // --- another workspace, and back
    await page.getByLabel('New workspace name').fill('Book club');
    await page.getByRole('button', { name: 'Create and switch' }).click();
    await page.getByRole('heading', { name: 'Book club', level: 2 }).waitFor();
    assert.equal(await page.getByLabel('Workspace', { exact: true }).inputValue() !== 'local', true);
    await page.locator('.sidebar').getByText('No sessions yet').waitFor();
    assert.equal(await page.locator('.sidebar').getByText('The Lantern Road').count(), 0, "the other workspace's sessions are not listed");
    await shot(page, 'desktop-control-other-workspace');
    await page.getByLabel('Workspace', { exact: true }).selectOption({ label: 'Local' });
    await page.locator('.sidebar').getByText('The Lantern Road').waitFor();
    await page.getByRole('heading', { name: 'Local', level: 2 }).waitFor();

    // --- models, health and spend
    await tab(page, 'Models & spend');
    await page.getByText('Every task has a working model.').waitFor();
    await page.getByRole('list', { name: 'Providers' }).getByText('Working').waitFor();
    await page.getByRole('figure').getByText('Tokens per day, last 7 days').waitFor();
    const spend = page.getByRole('list', { name: 'Spend by session' });
    await spend.getByText('The Lantern Road', { exact: true }).waitFor();
    await spend.getByRole('button', { name: /Details for The Lantern Road/ }).click();
    await spend.getByText('This session, over its life').waitFor();
    await page.getByText(/This workspace, \w+ \d{4}/).first().waitFor();
    const tokens = await page.locator('.totals dd').first().innerText();
    assert.notEqual(tokens, '0', 'the story turn used tokens');
    await shotAndAxe(page, 'desktop-control-models');

    // --- the audit log lists what was just done
    await tab(page, 'Audit log');
    const log = page.getByRole('list', { name: 'Audit entries' });
    for (const what of ['Secret created', 'Secret deleted', 'Feature switched off', 'Display name changed', 'API key created', 'API key revoked']) {
      await log.getByText(what, { exact: true }).first().waitFor();
    }
    await page.getByLabel('Action').selectOption({ label: 'Secret deleted' });
    await page.getByText(/^1 of \d+ entries match\.$/).waitFor();
    assert.equal(await log.locator('li').count(), 1);
    await shotAndAxe(page, 'desktop-control-audit');
    await page.getByLabel('Action').selectOption({ label: 'All actions' });

    assert.deepEqual(errors, []);
    await context.close();
  });

  test('phone, dark: every screen fits, reads and passes axe', async () => {
    const { context, page, errors } = await open(server, 'phone', { scheme: 'dark' });
    await page.getByRole('link', { name: 'Control room' }).waitFor();
    await openControl(page, 'phone');
    await page.getByLabel('Display name').waitFor();
    await shotAndAxe(page, 'phone-control-account');
    for (const [name, file, ready] of [
      ['Workspace', 'phone-control-workspace', 'Secrets'],
      ['Models & spend', 'phone-control-models', 'Token spend'],
      ['Audit log', 'phone-control-audit', 'Audit log'],
    ]) {
      await tab(page, name);
      await page.getByRole('heading', { name: ready, level: 2 }).waitFor();
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `${name} fits the phone (${width}px)`);
      await shotAndAxe(page, file);
    }
    await page.getByRole('button', { name: 'All sessions' }).click();
    await page.locator('.sidebar').getByText('The Lantern Road').waitFor();
    assert.deepEqual(errors, []);
    await context.close();
  });
});

describe('the control room when login is required', () => {
  let server;
  before(async () => {
    server = await startServer({ TALEWEAVER_REQUIRE_LOGIN: 'true', ...BUDGETS });
  });
  after(async () => {
    await server?.stop();
  });

  test('an admin adds a member and changes their role; the member switches in, and is not offered the audit log', async () => {
    const token = /one-time token: (\S+)/.exec(server.output())?.[1];
    assert.ok(token, 'the server printed a setup token');
    const admin = await open(server, 'desktop');
    await admin.page.getByRole('button', { name: /First time here/ }).click();
    await admin.page.getByLabel('Setup token').fill(token);
    await admin.page.getByLabel('Email').fill('ada@example.com');
    await admin.page.getByLabel('Password').fill('correct horse battery');
    await admin.page.getByRole('button', { name: 'Create administrator' }).click();
    await admin.page.getByRole('button', { name: 'New', exact: true }).waitFor();
    await playStory(admin.page, 'The Glass Orchard');
    const created = await call(admin.page, 'POST', '/api/v1/users', { email: 'bo@example.com', password: 'another good password' });
    assert.equal(created.status, 201);

    await openControl(admin.page, 'desktop');
    await admin.page.getByText('Signed in as ada@example.com').waitFor();
    await admin.page.getByRole('button', { name: 'Sign out on this device' }).waitFor();
    await tab(admin.page, 'Workspace');
    const workspace = await admin.page.getByLabel('Workspace name', { exact: true }).inputValue();
    await admin.page.getByLabel('Email or user ID').fill('bo@example.com');
    await admin.page.getByLabel('Role', { exact: true }).selectOption('viewer');
    await admin.page.getByRole('button', { name: 'Add member' }).click();
    await admin.page.getByRole('status').getByText(`is now a viewer of ${workspace}.`).waitFor();
    await admin.page.getByLabel(/^Role of bo/).selectOption('editor');
    await admin.page.getByRole('status').getByText('is now an editor.').waitFor();
    await admin.page.getByRole('heading', { name: 'Members' }).scrollIntoViewIfNeeded();
    await shotAndAxe(admin.page, 'desktop-control-members');

    await tab(admin.page, 'Audit log');
    const log = admin.page.getByRole('list', { name: 'Audit entries' });
    await log.getByText('Member added', { exact: true }).waitFor();
    await log.getByText('Role changed', { exact: true }).waitFor();
    await log.getByText('to: editor', { exact: false }).first().waitFor();

    // Bo, on a phone: not an admin here, so no audit log; switches to Ada's workspace.
    const bo = await open(server, 'phone');
    await bo.page.getByLabel('Email').fill('bo@example.com');
    await bo.page.getByLabel('Password').fill('another good password');
    await bo.page.getByRole('button', { name: 'Sign in' }).click();
    await bo.page.getByText('No sessions yet').waitFor();
    await openControl(bo.page, 'phone');
    await bo.page.getByLabel('Workspace', { exact: true }).selectOption({ label: workspace });
    await tab(bo.page, 'Workspace');
    await bo.page.getByRole('heading', { name: workspace, level: 2 }).waitFor();
    assert.equal(await bo.page.getByRole('navigation', { name: 'Control room' }).getByRole('link', { name: 'Audit log' }).count(), 0);
    await bo.page.getByText('Only owners and admins add members or change roles.').waitFor();
    await bo.page.getByText('Secrets are kept by admins').waitFor();
    await shotAndAxe(bo.page, 'phone-control-workspace-editor');
    await bo.page.goto(`${server.url}/control/audit`);
    await bo.page.getByText('The audit log is for admins').waitFor();
    assert.equal(await bo.page.getByRole('list', { name: 'Audit entries' }).count(), 0);
    const theirs = JSON.parse((await call(bo.page, 'GET', '/api/v1/workspaces')).body).find((w) => w.name === workspace);
    const refused = await call(bo.page, 'GET', `/api/v1/workspaces/${theirs.id}/audit`);
    assert.equal(refused.status, 403, 'and the API refuses it too');
    await shot(bo.page, 'phone-control-audit-refused');
    await bo.page.getByRole('button', { name: 'All sessions' }).click();
    await bo.page.getByText('The Glass Orchard').waitFor();

    // Signing out from the control room.
    await admin.page.goto(`${admin.page.url().replace(/\/control.*$/, '')}/control/account`);
    await admin.page.getByRole('button', { name: 'Sign out on this device' }).click();
    await admin.page.getByRole('heading', { name: 'Welcome back' }).waitFor();
    assert.deepEqual(admin.errors, []);
    assert.deepEqual(bo.errors, []);
    await admin.context.close();
    await bo.context.close();
  });
});
