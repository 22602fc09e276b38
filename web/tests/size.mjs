// `npm run size`: the built app's script and styles, raw and gzipped, against the
// budget of 200 KB of gzipped script on first load (the issue's, and SillyTavern's
// first load is about 1.26 MB). Exits 1 over budget.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const BUDGET = 200 * 1024;
const assets = resolve(import.meta.dirname, '../../src/taleweaver/webapp/assets');
let script = 0;
for (const name of readdirSync(assets).sort()) {
  const data = readFileSync(join(assets, name));
  const gzipped = gzipSync(data, { level: 9 }).length;
  if (name.endsWith('.js')) script += gzipped;
  console.log(`${name.padEnd(32)} ${(data.length / 1024).toFixed(1).padStart(7)} KB  gzip ${(gzipped / 1024).toFixed(1).padStart(6)} KB`);
}
console.log(`script on first load: ${(script / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB)`);
if (script > BUDGET) {
  console.error('over the size budget');
  process.exit(1);
}
