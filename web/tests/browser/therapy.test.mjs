// The wellbeing screens in a real headless Chromium against the real server: a player
// sets a goal and records progress, takes a PHQ-9 and a GAD-7 and sees their scores
// and chart, changes retention and consent, and a positive item 9 shows the crisis
// resources with care; a therapist sees an assigned player's scores and acknowledges
// their flag, and a player not assigned to them stays out of sight. Desktop and phone,
// with axe on every new screen; screenshots land in test-results/screenshots.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { ARGS, AXE, SHOTS, VIEWPORTS } from './support.mjs';


mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ARGS, headless: true });
});
after(async () => {
  await browser?.close();
});

async function open(server, viewport, { scheme = 'light', path = '/', init } = {}) {
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
  if (init) await context.addInitScript(init.script, init.arg);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(server.url + path);
  return { context, page, errors };
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

/** Serious and critical accessibility violations on the page as it is now. */
async function axeViolations(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: AXE });
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  });
}

/** Answer a check-in: `answers[i]` is the label chosen for item i + 1. */
async function answer(page, answers) {
  const items = page.locator('fieldset.item');
  assert.equal(await items.count(), answers.length);
  for (const [i, label] of answers.entries()) {
    await items.nth(i).getByLabel(label, { exact: true }).check();
  }
}

const tab = (page, name) => page.getByRole('navigation', { name: 'Wellbeing' }).getByRole('link', { name, exact: true });

/** A request from the page as its signed-in user (with the CSRF token), in `workspace`. */
function call(page, method, path, body, workspace) {
  return page.evaluate(
    async ({ method, path, body, workspace }) => {
      const csrf = /tw_csrf=([^;]+)/.exec(document.cookie)?.[1] ?? '';
      const headers = { 'content-type': 'application/json', 'x-csrf-token': decodeURIComponent(csrf) };
      if (workspace) headers['x-workspace'] = workspace;
      const response = await fetch('/api/v1' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    { method, path, body, workspace },
  );
}

for (const viewport of ['desktop', 'phone']) {
  describe(`a player's wellbeing at the ${viewport} viewport`, () => {
    let server;
    before(async () => {
      server = await startServer();
    });
    after(async () => {
      await server?.stop();
    });

    test('agrees to keep records, sets a goal, records progress and changes retention', async () => {
      const { context, page, errors } = await open(server, viewport);
      await page.getByRole('link', { name: 'Wellbeing' }).click();
      await page.getByRole('heading', { name: 'Goals are kept only with your agreement' }).waitFor();
      await shot(page, `${viewport}-wellbeing-invite`);
      assert.deepEqual(await axeViolations(page), []);

      await page.getByRole('button', { name: 'Review and agree' }).click();
      await page.getByRole('heading', { name: 'What is kept' }).waitFor();
      assert.match(await page.locator('p.state').innerText(), /is off. Nothing from check-ins or goals is stored/);
      await page.getByRole('button', { name: 'Agree and keep my records' }).click();
      await page.getByRole('status').getByText(/will be kept from now on/).waitFor();
      await page.getByLabel('Keep records for').selectOption({ label: '3 months' });
      await page.getByRole('button', { name: 'Save changes' }).click();
      await page.getByRole('status').getByText('Saved. Records are kept for 3 months.').waitFor();
      await shot(page, `${viewport}-wellbeing-privacy`);
      assert.deepEqual(await axeViolations(page), []);

      await tab(page, 'Goals').click();
      await page.getByLabel('Goal', { exact: true }).fill('Take a short walk most mornings');
      await page.getByLabel(/Why it matters/).fill('Fresh air helps me think.');
      await page.getByRole('button', { name: 'Add goal' }).click();
      await page.getByRole('status').getByText('Added “Take a short walk most mornings”.').waitFor();
      await page.getByRole('button', { name: 'Record progress on Take a short walk most mornings' }).click();
      await page.getByLabel('Progress on Take a short walk most mornings, in percent').fill('40');
      await page.getByRole('button', { name: 'Save progress' }).click();
      await page.getByRole('status').getByText(/saved: 40%/).waitFor();
      assert.equal(await page.getByRole('progressbar', { name: 'Progress on Take a short walk most mornings' }).getAttribute('value'), '40');
      await page.getByRole('heading', { name: 'Progress over time' }).waitFor();
      await page.getByRole('img', { name: /Progress on goals over time.*40%/ }).waitFor();

      // Edit: the title changes, the progress stays.
      await page.getByRole('button', { name: 'Edit Take a short walk most mornings' }).click();
      await page.locator('form.edit').getByLabel('Goal', { exact: true }).fill('Take a walk most mornings');
      await page.getByRole('button', { name: 'Save', exact: true }).click();
      await page.getByRole('heading', { name: 'Take a walk most mornings' }).waitFor();
      await page.getByRole('heading', { name: 'Progress over time' }).scrollIntoViewIfNeeded();
      await shot(page, `${viewport}-wellbeing-goals`);
      assert.deepEqual(await axeViolations(page), []);
      assert.deepEqual(errors, []);
      await context.close();
    });

    test('takes a PHQ-9 and a GAD-7 and sees the scores and the chart', async () => {
      const { context, page, errors } = await open(server, viewport, { path: '/wellbeing/check-ins' });
      await page.getByRole('button', { name: 'Begin PHQ-9' }).click();
      await page.getByText('Over the last 2 weeks, how often have you been bothered by any of the following problems?').waitFor();
      const labels = ['Not at all', 'Several days', 'More than half the days', 'Nearly every day'];
      for (const label of labels) await page.locator('fieldset.item').first().getByLabel(label, { exact: true }).waitFor();
      await answer(page, ['Several days', 'Several days', 'More than half the days', 'Several days', 'Not at all', 'Several days', 'Several days', 'Not at all', 'Not at all']);
      await shot(page, `${viewport}-wellbeing-phq9`);
      assert.deepEqual(await axeViolations(page), []);
      await page.getByRole('button', { name: 'See my result' }).click();
      const result = page.getByRole('region', { name: 'Your PHQ-9 result' });
      await result.waitFor();
      assert.match(await result.innerText(), /7 of 27[\s\S]*mild/);
      assert.equal(await page.getByRole('complementary', { name: 'Support is here' }).count(), 0);

      await page.getByRole('button', { name: 'Begin GAD-7' }).click();
      await answer(page, ['Several days', 'Several days', 'Not at all', 'More than half the days', 'Not at all', 'Several days', 'Not at all']);
      await page.getByRole('button', { name: 'See my result' }).click();
      const gad = page.getByRole('region', { name: 'Your GAD-7 result' });
      await gad.waitFor();
      assert.match(await gad.innerText(), /5 of 21[\s\S]*mild/);
      await page.getByRole('img', { name: /PHQ-9 scores over time/ }).waitFor();
      await page.getByRole('img', { name: /GAD-7 scores over time/ }).waitFor();
      await shot(page, `${viewport}-wellbeing-result`);
      await page.getByRole('heading', { name: 'Your scores over time' }).scrollIntoViewIfNeeded();
      await shot(page, `${viewport}-wellbeing-scores`);
      assert.deepEqual(await axeViolations(page), []);
      assert.deepEqual(errors, []);
      await context.close();
    });

    test('a positive item 9 shows the crisis resources with care', async () => {
      const { context, page } = await open(server, viewport, { path: '/wellbeing/check-ins' });
      await page.getByRole('button', { name: 'Begin PHQ-9' }).click();
      await answer(page, ['Several days', 'Several days', 'Several days', 'Several days', 'Not at all', 'Several days', 'Not at all', 'Not at all', 'Several days']);
      await page.getByRole('button', { name: 'See my result' }).click();
      const care = page.getByRole('complementary', { name: 'Support is here' });
      await care.waitFor();
      assert.match(await care.innerText(), /you don't have to carry this alone/i);
      assert.match(await care.innerText(), /Emergency services/);
      assert.equal(await page.getByRole('alert').count(), 0, 'a crisis is never shown as an error');
      await shot(page, `${viewport}-wellbeing-crisis`);
      assert.deepEqual(await axeViolations(page), []);
      await context.close();
    });

    test('withdraws consent, and the records go', async () => {
      const { context, page } = await open(server, viewport, { path: '/wellbeing/privacy', scheme: viewport === 'desktop' ? 'dark' : 'light' });
      await page.getByRole('button', { name: 'Withdraw consent…' }).click();
      await page.getByRole('group', { name: 'Withdraw consent?' }).waitFor();
      if (viewport === 'desktop') {
        await shot(page, 'desktop-wellbeing-withdraw-dark');
        assert.deepEqual(await axeViolations(page), []);
      }
      await page.getByRole('button', { name: 'Withdraw and delete' }).click();
      await page.getByRole('status').getByText('Consent withdrawn. Your wellbeing records were deleted.').waitFor();
      await tab(page, 'Goals').click();
      await page.getByRole('heading', { name: 'Goals are kept only with your agreement' }).waitFor();
      await context.close();
    });
  });
}

describe('therapists and their players when login is required', () => {
  let server;
  const ids = {};
  let workspace;
  before(async () => {
    server = await startServer({ TALEWEAVER_REQUIRE_LOGIN: 'true' });
  });
  after(async () => {
    await server?.stop();
  });

  async function signIn(email, password, viewport = 'desktop', userId = null) {
    // The workspace this test works in, chosen on the device as the control room's switcher does.
    const init = userId ? { script: ([key, id]) => localStorage.setItem(key, id), arg: [`tw.workspace.${userId}`, workspace] } : undefined;
    const session = await open(server, viewport, { init });
    await session.page.getByRole('heading', { name: 'Welcome back' }).waitFor();
    await session.page.getByLabel('Email').fill(email);
    await session.page.getByLabel('Password').fill(password);
    await session.page.getByRole('button', { name: 'Sign in' }).click();
    await session.page.getByRole('button', { name: 'New', exact: true }).waitFor();
    return session;
  }

  test('an administrator sets up a therapist and two players', async () => {
    const token = /one-time token: (\S+)/.exec(server.output())?.[1];
    assert.ok(token, 'the server printed a setup token');
    const { context, page } = await open(server, 'desktop');
    await page.getByRole('button', { name: /First time here/ }).click();
    await page.getByLabel('Setup token').fill(token);
    await page.getByLabel('Email').fill('ada@example.com');
    await page.getByLabel('Password').fill('correct horse battery');
    await page.getByRole('button', { name: 'Create administrator' }).click();
    await page.getByRole('button', { name: 'New', exact: true }).waitFor();
    workspace = (await call(page, 'GET', '/workspaces')).body[0].id;
    for (const [name, role] of [['tess', 'therapist'], ['pia', 'player'], ['otto', 'player']]) {
      const made = await call(page, 'POST', '/users', { email: `${name}@example.com`, password: `${name} has a good password`, display_name: name[0].toUpperCase() + name.slice(1) });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      ids[name] = made.body.id;
      const member = await call(page, 'PUT', `/workspaces/${workspace}/members/${ids[name]}`, { role });
      assert.equal(member.status, 200, JSON.stringify(member.body));
    }
    const assigned = await call(page, 'PUT', `/workspaces/${workspace}/assignments`, { therapist_id: ids.tess, player_id: ids.pia });
    assert.equal(assigned.status, 204);
    await context.close();

    // Both players keep records; Pia's PHQ-9 has a positive item 9, and Otto's too.
    for (const name of ['pia', 'otto']) {
      const player = await signIn(`${name}@example.com`, `${name} has a good password`, 'desktop', ids[name]);
      const p = player.page;
      assert.equal((await call(p, 'PUT', '/players/me/profile', { consent: { therapy_data: true } }, workspace)).status, 200);
      assert.equal((await call(p, 'POST', '/players/me/goals', { title: 'Sleep before midnight', progress: 30 }, workspace)).status, 201);
      for (const answers of [[1, 1, 2, 1, 1, 1, 0, 0, 0], [2, 2, 2, 1, 1, 2, 1, 0, 1]]) {
        assert.equal((await call(p, 'POST', '/players/me/assessments', { instrument: 'phq9', answers }, workspace)).status, 201);
      }
      assert.equal((await call(p, 'POST', '/players/me/assessments', { instrument: 'gad7', answers: [1, 1, 1, 0, 0, 1, 0] }, workspace)).status, 201);
      // A player is not shown a therapist's list: a calm word instead.
      await p.goto(server.url + '/wellbeing/people');
      await p.getByText('there is no one here for you to support').waitFor();
      await player.context.close();
    }
  });

  for (const viewport of ['desktop', 'phone']) {
    test(`the therapist sees Pia's scores and acknowledges her flag, and not Otto (${viewport})`, async () => {
      const { context, page, errors } = await signIn('tess@example.com', 'tess has a good password', viewport, ids.tess);
      await page.getByRole('link', { name: 'Wellbeing' }).click();
      await page.getByRole('heading', { name: 'People you support' }).waitFor();
      const pia = page.getByRole('link', { name: /Pia/ });
      await pia.waitFor();
      assert.equal(await page.getByRole('link', { name: /Otto/ }).count(), 0, 'a player not assigned is not listed');
      if (viewport === 'desktop') assert.match(await pia.innerText(), /1 note to look at/);
      await shot(page, `${viewport}-wellbeing-people`);
      assert.deepEqual(await axeViolations(page), []);

      await pia.click();
      await page.getByRole('heading', { name: 'Pia', level: 2 }).waitFor();
      await page.getByRole('img', { name: /Pia: PHQ-9 scores over time/ }).waitFor();
      await page.getByRole('img', { name: /Pia: GAD-7 scores over time/ }).waitFor();
      await page.getByRole('heading', { name: 'Sleep before midnight' }).waitFor();
      if (viewport === 'desktop') {
        const note = page.locator('li.note');
        assert.match(await note.innerText(), /A check-in answer asked for care \(PHQ-9, question 9\)/);
        await shot(page, 'desktop-wellbeing-person');
        assert.deepEqual(await axeViolations(page), []);
        await note.getByRole('button', { name: 'Acknowledge' }).click();
        await page.getByRole('status').getByText('Acknowledged. Thank you for checking in.').waitFor();
        await page.getByText('Nothing is waiting for you.').waitFor();
      } else {
        await page.getByText('Nothing is waiting for you.').waitFor();
        await shot(page, 'phone-wellbeing-person');
        assert.deepEqual(await axeViolations(page), []);
      }

      // Otto's records are not Tess's to see, even by address.
      await page.goto(`${server.url}/wellbeing/people/${ids.otto}`);
      await page.getByRole('heading', { name: 'Not among the people you support' }).waitFor();
      assert.equal(await page.getByRole('alert').count(), 0);
      await shot(page, `${viewport}-wellbeing-not-assigned`);
      assert.deepEqual(await axeViolations(page), []);
      assert.deepEqual(errors.filter((e) => !/404|Not Found/.test(e)), []);
      await context.close();
    });
  }
});
