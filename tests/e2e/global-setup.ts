/** Starts the stack once for the whole suite (see support/stack.ts). */
import { saveStack, startStack } from './support/stack';

export default async function globalSetup(): Promise<void> {
  const stack = await startStack();
  saveStack(stack);
  console.log(`e2e stack: dashboard ${stack.baseUrl}, graph-api ${stack.apiUrl}, services: ${stack.services.join(', ')}`);
}
