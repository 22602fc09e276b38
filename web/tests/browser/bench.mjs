// `npm run bench`: the web app's speed budgets, measured in headless Chromium against
// the real server (scripted model):
//   - opening a 10,000-message session against a 100-message one: time from navigation
//     to the first message painted (budget: 1 s);
//   - from pressing Enter to the first token painted, against the server's own time to
//     first token measured over plain HTTP in the same run (budget: 50 ms beyond it).
// A benchmark, not a test: it prints the figures and exits 1 only when a budget is missed.

import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const RUNS = 5;

function chat(messages) {
  const lines = [JSON.stringify({ user_name: 'Ada', character_name: 'Mara', create_date: '2024-06-03@22h12m05s', chat_metadata: {} })];
  for (let i = 0; i < messages; i++) {
    const user = i % 2 === 1;
    lines.push(JSON.stringify({
      name: user ? 'Ada' : 'Mara',
      is_user: user,
      is_system: false,
      send_date: 'June 3, 2024 10:12pm',
      mes: `${user ? 'I ask' : 'Mara answers'} about the lamp, message ${i + 1}. The sea is loud tonight and the glass hums.`,
      extra: {},
    }));
  }
  return lines.join('\n') + '\n';
}

async function importChat(url, messages) {
  const response = await fetch(`${url}/api/v1/sessions/import?title=${messages}%20messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: chat(messages),
  });
  if (!response.ok) throw new Error(`import failed: ${response.status} ${await response.text()}`);
  return (await response.json()).id;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function openTimes(browser, url, sessionId) {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, serviceWorkers: 'block' });
    const page = await context.newPage();
    await page.goto(`${url}/s/${sessionId}`, { waitUntil: 'commit' });
    await page.locator('article.narrator').first().waitFor();
    times.push(await page.evaluate(() => performance.now()));
    await context.close();
  }
  return median(times);
}

async function serverFirstToken(url) {
  const created = await (await fetch(`${url}/api/v1/sessions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'story', title: 'ttft' }),
  })).json();
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    const response = await fetch(`${url}/api/v1/sessions/${created.id}/turns`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ text: 'I walk on' }),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    let first = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (first === null && text.includes('event: token')) first = performance.now() - started;
    }
    times.push(first);
  }
  return median(times);
}

async function browserFirstToken(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, serviceWorkers: 'block' });
  const page = await context.newPage();
  const created = await (await fetch(`${url}/api/v1/sessions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'story', title: 'paint' }),
  })).json();
  await page.goto(`${url}/s/${created.id}`);
  const composer = page.locator('#composer');
  await composer.waitFor();
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    await composer.fill('I walk on');
    await page.evaluate(() => {
      const w = window;
      w.__pressed = null;
      w.__painted = new Promise((done) => {
        document.querySelector('#composer')?.addEventListener('keydown', () => (w.__pressed = performance.now()), { once: true });
        const observer = new MutationObserver(() => {
          if (document.querySelector('.live p')) {
            observer.disconnect();
            requestAnimationFrame(() => done(performance.now()));
          }
        });
        observer.observe(document.body, { childList: true, subtree: true });
      });
    });
    await composer.press('Enter');
    times.push(await page.evaluate(async () => (await window.__painted) - window.__pressed));
    await page.getByRole('button', { name: 'Stop the reply' }).waitFor({ state: 'detached' });
  }
  await context.close();
  return median(times);
}

const server = await startServer({ TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS: '5' });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ARGS, headless: true });
let failed = false;
try {
  const small = await importChat(server.url, 100);
  const large = await importChat(server.url, 10_000);
  const openSmall = await openTimes(browser, server.url, small);
  const openLarge = await openTimes(browser, server.url, large);
  console.log(`open a 100-message session:    first message painted in ${openSmall.toFixed(0)} ms (median of ${RUNS})`);
  console.log(`open a 10,000-message session: first message painted in ${openLarge.toFixed(0)} ms (budget 1000 ms)`);
  const ttftServer = await serverFirstToken(server.url);
  const ttftBrowser = await browserFirstToken(browser, server.url);
  const overhead = ttftBrowser - ttftServer;
  console.log(`first token: server ${ttftServer.toFixed(1)} ms over HTTP; Enter to painted in the browser ${ttftBrowser.toFixed(1)} ms`);
  console.log(`  the web app adds ${overhead.toFixed(1)} ms (budget 50 ms)`);
  failed = openLarge > 1000 || overhead > 50;
} finally {
  await browser.close();
  await server.stop();
}
process.exit(failed ? 1 : 0);
