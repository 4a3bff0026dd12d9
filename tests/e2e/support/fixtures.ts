/**
 * What every test gets: the running stack, a project of its own (so no test sees another's events), a graph-api
 * client for that project, a `dashboard` that opens the page on that project, and `frames`, the stream entries its
 * event sockets received. Uncaught page errors, and frames the dashboard's decoder cannot read, fail the test that
 * caused them.
 */
import { test as base, expect, type Locator, type Page } from '@playwright/test';
import { randomUUID } from 'node:crypto';
import { TestApi } from './api';
import { FrameRecorder } from './frames';
import { loadStack, type StackInfo } from './stack';

/** Fails a test whose page threw an uncaught error (every spec uses it, with or without the shared stack). */
export const pageErrors: [
  (args: { page: Page }, use: (errors: string[]) => Promise<void>) => Promise<void>,
  { auto: true },
] = [
  async ({ page }: { page: Page }, use: (errors: string[]) => Promise<void>) => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await use(errors);
    expect(errors, 'uncaught errors in the page').toEqual([]);
  },
  { auto: true },
];

export class Dashboard {
  constructor(
    readonly page: Page,
    readonly url: string,
  ) {}

  async open(): Promise<void> {
    await this.page.goto(this.url);
    await expect(this.page.getByTestId('welcome')).toBeVisible();
  }

  /** Opens the page and waits for the WebSocket to be open. */
  async openConnected(): Promise<void> {
    await this.open();
    await this.expectConnected();
  }

  async expectConnected(): Promise<void> {
    await expect(this.state).toHaveAttribute('data-state', 'open');
  }

  get state(): Locator {
    return this.page.getByTestId('connection-state');
  }

  testId(id: string): Locator {
    return this.page.getByTestId(id);
  }

  /**
   * Waits until the graph canvas is at rest (its layout done, its camera still) with the camera focused on node
   * `id`, and returns where that node is drawn: its centre in pixels from the canvas's top left corner. GraphRenderer
   * publishes all of this as data attributes of the canvas; they are read in one go, so they describe one moment.
   */
  async focusedNodeAtRest(id: string): Promise<{ x: number; y: number }> {
    const canvas = this.testId('graph-canvas');
    let view: Record<string, string | undefined> = {};
    await expect
      .poll(async () => (view = await canvas.evaluate((el) => ({ ...el.dataset }))), {
        message: `the graph at rest, focused on ${id}`,
        timeout: 60_000,
      })
      .toMatchObject({ layoutRunning: 'false', cameraMoving: 'false', focusedNode: id, focusedX: expect.any(String) });
    const at = { x: Number(view.focusedX), y: Number(view.focusedY) };
    const box = await canvas.boundingBox();
    expect(box, 'the graph canvas is laid out').not.toBeNull();
    expect(at.x, `${id} is drawn inside the canvas`).toBeGreaterThanOrEqual(0);
    expect(at.x, `${id} is drawn inside the canvas`).toBeLessThan(box!.width);
    expect(at.y, `${id} is drawn inside the canvas`).toBeGreaterThanOrEqual(0);
    expect(at.y, `${id} is drawn inside the canvas`).toBeLessThan(box!.height);
    return at;
  }

  /** Waits until LiveStats shows that many changes received, in that many frames (stream entries). */
  async expectReceived(expected: { changes: number; frames: number }): Promise<void> {
    await expect(this.testId('change-count')).toHaveAttribute('data-value', String(expected.changes));
    await expect(this.testId('frame-count')).toHaveAttribute('data-value', String(expected.frames));
  }

  /** Waits until the numbers LiveStats shows equal `expected`. */
  async expectCounts(expected: { nodes: number; relationships: number }): Promise<void> {
    await expect(this.testId('node-count')).toHaveAttribute('data-value', String(expected.nodes));
    await expect(this.testId('relationship-count')).toHaveAttribute('data-value', String(expected.relationships));
  }
}

interface Fixtures {
  stack: StackInfo;
  project: string;
  api: TestApi;
  dashboard: Dashboard;
  frames: FrameRecorder;
  pageErrors: string[];
}

export const test = base.extend<Fixtures>({
  // eslint-disable-next-line no-empty-pattern
  stack: async ({}, use) => {
    await use(loadStack());
  },
  // eslint-disable-next-line no-empty-pattern
  project: async ({}, use) => {
    await use(`e2e-${randomUUID().slice(0, 13)}`);
  },
  api: async ({ stack, project }, use) => {
    await use(new TestApi(stack.apiUrl, project));
  },
  dashboard: async ({ page, stack, project }, use) => {
    await use(new Dashboard(page, `${stack.baseUrl}?project=${project}`));
  },
  frames: [
    async ({ page }, use) => {
      const frames = new FrameRecorder(page);
      await use(frames);
      expect(frames.unreadable, 'frames the dashboard cannot read').toEqual([]);
    },
    { auto: true },
  ],
  pageErrors,
});

export { expect };

/** Skips the calling test unless the stack has `service` (its binary was built). */
export function needs(stack: StackInfo, ...services: string[]): void {
  const missing = services.filter((s) => !stack.services.includes(s));
  test.skip(missing.length > 0, `not built yet: ${missing.join(', ')}`);
}

/** Batch operations for `n` function nodes named `<prefix>_<i>`, each contained in the first. */
export function nodeOps(prefix: string, n: number, kind = 'function'): unknown[] {
  const ops: unknown[] = [];
  for (let i = 0; i < n; i++) {
    ops.push({
      op: 'upsert_node',
      node: { id: `${prefix}:${i}`, kind: i === 0 ? 'file' : kind, name: `${prefix}_${i}`, file: `${prefix}.py`, properties: {} },
    });
  }
  for (let i = 1; i < n; i++) {
    ops.push({
      op: 'upsert_relationship',
      relationship: { id: `${prefix}:c${i}`, type: 'contains', source: `${prefix}:0`, target: `${prefix}:${i}`, properties: {} },
    });
  }
  return ops;
}
