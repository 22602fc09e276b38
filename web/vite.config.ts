import { fileURLToPath } from 'node:url';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

// The build lands inside the Python package, which serves it at `/` (see api/webapp.py).
const outDir = fileURLToPath(new URL('../src/taleweaver/webapp', import.meta.url));

export default defineConfig({
  plugins: [svelte()],
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    assetsDir: 'assets',
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a server started with `make run`.
    proxy: { '/api': 'http://127.0.0.1:8000' },
  },
});
