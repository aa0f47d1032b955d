import { defineConfig } from 'vitest/config';
import preact from '@preact/preset-vite';

const backend = 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [preact()],
  server: {
    proxy: {
      '/api': { target: backend, changeOrigin: true },
      // The Host header stays the dev server's, as the page's Origin is: the server lets a page
      // open the WebSocket only from its own origin (or PYCHAT_ALLOWED_ORIGINS).
      '/ws': { target: backend, ws: true },
    },
  },
  build: { outDir: 'dist', sourcemap: true },
  test: { include: ['test/**/*.test.ts'], environment: 'node' },
});
