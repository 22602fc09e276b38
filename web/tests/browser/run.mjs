// `npm run test:browser`: the journeys and the lorebook screens, with a clear word when
// Chromium is missing.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(chromium)) {
  console.error(`browser tests need Chromium at ${chromium}: apt-get install -y chromium`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', 'tests/browser/journeys.test.mjs', 'tests/browser/lorebooks.test.mjs', 'tests/browser/characters.test.mjs', 'tests/browser/live.test.mjs', 'tests/browser/control.test.mjs', 'tests/browser/therapy.test.mjs'], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
