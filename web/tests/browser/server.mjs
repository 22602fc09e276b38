// Starts the real Taleweaver server (scripted model, a temporary data directory) on a
// free loopback port for the browser tests, and stops it afterwards.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../../..');
const BIN = process.env.TALEWEAVER_BIN ?? join(ROOT, '.venv/bin/taleweaver');

function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.unref();
    probe.on('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

export async function startServer(extraEnv = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'taleweaver-web-'));
  const port = await freePort();
  // The developer's own TALEWEAVER_* settings must not leak into the tests.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('TALEWEAVER_')),
  );
  Object.assign(env, {
    TALEWEAVER_DATA_DIR: dataDir,
    TALEWEAVER_MODEL: 'scripted',
    TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS: '25',
    TALEWEAVER_LOG_LEVEL: 'WARNING',
    TALEWEAVER_RATE_LIMIT: '100000/minute',
    TALEWEAVER_LOGIN_RATE_LIMIT: '1000/minute',
    ...extraEnv,
  });
  const child = spawn(BIN, ['serve', '--host', '127.0.0.1', '--port', String(port)], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited:\n${output}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`the server did not start in 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    output: () => output,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => {
        if (child.exitCode !== null) r();
        else child.once('exit', r);
        setTimeout(r, 5000);
      });
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
