/**
 * Build and dev server of the dashboard. In production nginx serves `dist/` and proxies `/api` and `/ws`; the dev
 * server does the same against the default ports of graph-api and ws-gateway (docs/DESIGN.md, "Configuration and ports").
 */
import { defineConfig } from 'vitest/config';
import vue from '@vitejs/plugin-vue';
import tailwindcss from '@tailwindcss/vite';

const api = process.env.CODEGRAPH_API_URL ?? 'http://127.0.0.1:8000';
const gateway = process.env.CODEGRAPH_WS_URL ?? 'ws://127.0.0.1:8001';

export default defineConfig({
  plugins: [vue(), tailwindcss()],
  server: {
    proxy: {
      '/api': { target: api, changeOrigin: true, xfwd: true },
      '/ws': { target: gateway, ws: true, changeOrigin: true, xfwd: true },
    },
  },
  build: {
    chunkSizeWarningLimit: 1024,
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
