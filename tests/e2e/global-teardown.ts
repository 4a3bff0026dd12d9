/** Stops the stack the global setup started. */
import fs from 'node:fs';
import { loadStack, STATE_FILE, stopStack } from './support/stack';

export default async function globalTeardown(): Promise<void> {
  if (!fs.existsSync(STATE_FILE)) return;
  const stack = loadStack();
  await stopStack(stack);
  fs.rmSync(STATE_FILE, { force: true });
  if (stack.runDir && !process.env.E2E_KEEP_RUN_DIR) fs.rmSync(stack.runDir, { recursive: true, force: true });
}
