import { defineConfig } from 'vitest/config';
import preact from '@preact/preset-vite';

const backend = 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [preact()],
  server: {
    proxy: {
      '/api': { target: backend, changeOrigin: true },
      '/ws': { target: backend, ws: true, changeOrigin: true },
    },
  },
  build: { outDir: 'dist', sourcemap: true },
  test: { include: ['test/**/*.test.ts'], environment: 'node' },
});
