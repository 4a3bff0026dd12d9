/**
 * Browser end-to-end tests of the dashboard against the real stack (scripts/stack.sh), in Debian's chromium:
 * no browser is ever downloaded. One worker: the machine has two cores and the suite shares one stack; each test
 * works in its own project, so tests do not see each other's events.
 */
import { defineConfig } from '@playwright/test';
import os from 'node:os';
import path from 'node:path';

// Shared by the global setup (which writes it) and the tests (which read it): the config is loaded in both.
process.env.E2E_STATE_FILE ??= path.join(os.tmpdir(), `cgl-e2e-state-${process.pid}.json`);

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export default defineConfig({
  testDir: './specs',
  globalSetup: './global-setup.ts',
  globalTeardown: './global-teardown.ts',
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 120_000,
  expect: { timeout: 20_000 },
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    browserName: 'chromium',
    viewport: { width: 1920, height: 1080 },
    launchOptions: { executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS },
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    actionTimeout: 20_000,
  },
});
