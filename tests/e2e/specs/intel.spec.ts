/**
 * The node details' code intelligence (NodeIntelPanel): callers, callees and the impact set of a function of a
 * small Python repository the real analysis-worker analysed, moving the selection through them, following a new
 * caller live, and highlighting the impact set in the graph.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from '@playwright/test';
import { expect, needs, test, type Dashboard } from '../support/fixtures';
import type { TestApi } from '../support/api';
import { StackUnit } from '../support/stack';

test.beforeEach(({ stack }) => needs(stack, 'graph-api', 'ws-gateway', 'analysis-worker'));

/**
 * app/core.py: load calls parse and validate (and log_event, defined nowhere: unresolved);
 * app/service.py: imports load; handle calls load; main calls handle; report calls checker.validate, which the
 * analysis cannot resolve (checker is any object), so report is only a possible caller of validate.
 */
const FILES: Record<string, string> = {
  'app/__init__.py': '',
  'app/core.py': [
    'def parse(text):',
    '    return [text]',
    '',
    '',
    'def validate(items):',
    '    return items',
    '',
    '',
    'def load(text):',
    '    log_event("load")',
    '    items = parse(text)',
    '    return validate(items)',
    '',
  ].join('\n'),
  'app/service.py': [
    'from app.core import load',
    '',
    '',
    'def handle(text):',
    '    return load(text)',
    '',
    '',
    'def main():',
    '    return handle("a b")',
    '',
    '',
    'def report(checker, items):',
    '    return checker.validate(items)',
    '',
  ].join('\n'),
};

const LOAD = 'py:app/core.py:load';
const PARSE = 'py:app/core.py:parse';
const VALIDATE = 'py:app/core.py:validate';
const HANDLE = 'py:app/service.py:handle';
const MAIN = 'py:app/service.py:main';
const SERVICE_FILE = 'file:app/service.py';
const REPORT = 'py:app/service.py:report';

async function analyse(api: TestApi, root: string, project: string): Promise<void> {
  const repo = path.join(root, project);
  for (const [file, text] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(repo, file)), { recursive: true });
    fs.writeFileSync(path.join(repo, file), text);
  }
  const { job_id } = await api.reanalyze(repo, 'full');
  await expect.poll(async () => (await api.job(job_id)).status, { timeout: 90_000 }).toBe('completed');
}

/** Selects node `id` through the search box. */
async function selectBySearch(dashboard: Dashboard, name: string, id: string): Promise<void> {
  await dashboard.testId('graph-search').fill(name);
  await dashboard.page.locator(`[data-testid="graph-search-result"][data-node-id="${id}"]`).click();
  await expect(dashboard.testId('node-details')).toHaveAttribute('data-node-id', id);
}

function items(page: Page, section: 'callers' | 'callees' | 'impact') {
  return page.getByTestId(`intel-${section}-item`);
}

async function ids(page: Page, section: 'callers' | 'callees' | 'impact'): Promise<string[]> {
  return (await items(page, section).evaluateAll((els) => els.map((e) => e.getAttribute('data-node-id') ?? ''))).sort();
}

test('callers, callees and impact of a function; click to move; a new caller arrives live; the impact set is highlighted', async ({
  dashboard,
  api,
  stack,
  project,
  page,
}) => {
  await analyse(api, stack.fixturesDir, project);
  // What depends on load, worked out by hand: service.py imports it and handle calls it (depth 1), main calls
  // handle (depth 2). The page must show the server's answer, and that answer is this one.
  const impact = await api.request<{ levels: Array<{ depth: number; nodes: Array<{ node: { id: string } }> }> }>(
    'GET',
    '/impact',
    undefined,
    { symbol: LOAD, depth: '3' },
  );
  const byDepth = impact.levels.map((l) => [l.depth, l.nodes.map((n) => n.node.id).sort()]);
  expect(byDepth).toEqual([
    [1, [SERVICE_FILE, HANDLE]],
    [2, [MAIN]],
  ]);
  const impactIds = [SERVICE_FILE, HANDLE, MAIN].sort();

  await dashboard.openConnected();
  await expect(dashboard.testId('graph-loading')).toBeHidden();
  await selectBySearch(dashboard, 'load', LOAD);

  // load: called by handle; calls parse and validate; log_event is reported as unresolved, not guessed.
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');
  await expect(dashboard.testId('intel-callees-count')).toHaveAttribute('data-value', '2');
  expect(await ids(page, 'callers')).toEqual([HANDLE]);
  expect(await ids(page, 'callees')).toEqual([PARSE, VALIDATE]);
  await expect(dashboard.testId('intel-unresolved')).toHaveCount(1);
  await expect(dashboard.testId('intel-unresolved')).toContainText('log_event');
  await expect(dashboard.testId('intel-impact-count')).toHaveAttribute('data-value', String(impactIds.length));
  expect(await ids(page, 'impact')).toEqual(impactIds);
  await expect(page.locator(`[data-testid="intel-impact-item"][data-node-id="${MAIN}"]`)).toHaveAttribute('data-depth', '2');
  await expect(page.locator(`[data-testid="intel-impact-item"][data-node-id="${HANDLE}"]`)).toHaveAttribute('data-depth', '1');

  // A click on a caller moves the selection there, with its own answers.
  await page.locator(`[data-testid="intel-callers-item"][data-node-id="${HANDLE}"]`).click();
  await expect(dashboard.testId('node-details')).toHaveAttribute('data-node-id', HANDLE);
  await expect(dashboard.testId('node-details-name')).toHaveText('handle');
  await expect(dashboard.testId('node-intel')).toHaveAttribute('data-symbol', HANDLE);
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');
  await expect(dashboard.testId('intel-callees-count')).toHaveAttribute('data-value', '1');
  expect(await ids(page, 'callers')).toEqual([MAIN]);
  expect(await ids(page, 'callees')).toEqual([LOAD]);

  // And back through a callee, on to validate.
  await page.locator(`[data-testid="intel-callees-item"][data-node-id="${LOAD}"]`).click();
  await expect(dashboard.testId('node-details')).toHaveAttribute('data-node-id', LOAD);
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');
  await page.locator(`[data-testid="intel-callees-item"][data-node-id="${VALIDATE}"]`).click();
  await expect(dashboard.testId('node-intel')).toHaveAttribute('data-symbol', VALIDATE);
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');
  expect(await ids(page, 'callers')).toEqual([LOAD]);

  // report's checker.validate(…) is no resolved call, but asked for, it is listed as a possible caller.
  await expect(dashboard.testId('intel-possible-callers-count')).toBeHidden();
  await dashboard.testId('intel-find-possible-callers').click();
  await expect(dashboard.testId('intel-possible-callers-count')).toHaveAttribute('data-value', '1');
  await expect(dashboard.testId('intel-possible-caller')).toHaveAttribute('data-node-id', REPORT);
  await expect(dashboard.testId('intel-possible-caller')).toContainText('checker.validate');
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');
  await dashboard.testId('intel-possible-caller').click();
  await expect(dashboard.testId('node-intel')).toHaveAttribute('data-symbol', REPORT);
  await expect(dashboard.testId('intel-callees-count')).toHaveAttribute('data-value', '0');
  await expect(dashboard.testId('intel-unresolved')).toContainText('checker.validate');

  await selectBySearch(dashboard, 'load', LOAD);
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');

  // A new caller written while the panel is open shows up without a reload (the change set mentions load).
  await api.createNode('py:app/extra.py:extra', 'extra', 'function', 'app/extra.py');
  await api.createRelationship('py:app/extra.py:extra|calls|load', 'calls', 'py:app/extra.py:extra', LOAD);
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '2');
  expect(await ids(page, 'callers')).toEqual(['py:app/extra.py:extra', HANDLE].sort());
  await expect(dashboard.testId('intel-impact-count')).toHaveAttribute('data-value', String(impactIds.length + 1));
  const liveImpact = [...impactIds, 'py:app/extra.py:extra'].sort();
  expect(await ids(page, 'impact')).toEqual(liveImpact);

  // Highlight the impact set: exactly it (and the selected node) is drawn emphasized, the rest dimmed; clear again.
  const canvas = dashboard.testId('graph-canvas');
  const highlight = dashboard.testId('intel-highlight');
  await expect(canvas).not.toHaveAttribute('data-emphasized-count');
  await highlight.click();
  await expect(highlight).toHaveAttribute('aria-pressed', 'true');
  const emphasized = [...liveImpact, LOAD].sort();
  await expect(canvas).toHaveAttribute('data-emphasized-count', String(emphasized.length));
  expect(JSON.parse((await canvas.getAttribute('data-emphasized-nodes'))!)).toEqual(emphasized);
  const nodes = Number(await dashboard.testId('graph-node-count').getAttribute('data-value'));
  expect(nodes, 'some nodes are left to dim').toBeGreaterThan(emphasized.length);

  // The highlight follows the live impact set: the new caller gone, it is no longer emphasized.
  await api.deleteNode('py:app/extra.py:extra');
  await expect(canvas).toHaveAttribute('data-emphasized-count', String(emphasized.length - 1));
  expect(JSON.parse((await canvas.getAttribute('data-emphasized-nodes'))!)).toEqual([...impactIds, LOAD].sort());
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');

  await highlight.click();
  await expect(highlight).toHaveAttribute('aria-pressed', 'false');
  await expect(canvas).not.toHaveAttribute('data-emphasized-count');
});

test('a graph-api that does not answer is said calmly in each section, and retry brings the answers back', async ({
  dashboard,
  api,
  stack,
  page,
}) => {
  test.skip(!stack.runDir, 'needs a stack this suite started');
  const [graphApi] = StackUnit.list(stack.runDir!, 'graph-api');
  test.skip(!graphApi, 'needs the graph-api of the stack');
  await api.batch([
    { op: 'upsert_node', node: { id: 'x:caller', kind: 'function', name: 'caller_fn', file: 'x.py', properties: {} } },
    { op: 'upsert_node', node: { id: 'x:callee', kind: 'function', name: 'callee_fn', file: 'x.py', properties: {} } },
    { op: 'upsert_relationship', relationship: { id: 'x:r', type: 'calls', source: 'x:caller', target: 'x:callee', properties: {} } },
  ]);
  await dashboard.openConnected();
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', '2');
  await selectBySearch(dashboard, 'caller_fn', 'x:caller');
  await expect(dashboard.testId('intel-callees-count')).toHaveAttribute('data-value', '1');

  await graphApi.stop();
  try {
    // Moving the selection asks again, and nginx answers 502 for the stopped graph-api.
    await page.locator('[data-testid="intel-callees-item"][data-node-id="x:callee"]').click();
    await expect(dashboard.testId('node-intel')).toHaveAttribute('data-symbol', 'x:callee');
    for (const section of ['callers', 'callees', 'impact']) {
      await expect(dashboard.testId(`intel-${section}`)).toHaveAttribute('data-state', 'error');
      await expect(dashboard.testId(`intel-${section}-error`)).toHaveAttribute('data-kind', 'unavailable');
      await expect(dashboard.testId(`intel-${section}-error`)).toContainText('Not available right now');
    }
    // The rest of the page goes on: the graph is still drawn and the details still name the node.
    await expect(dashboard.testId('node-details-name')).toHaveText('callee_fn');
  } finally {
    graphApi.start();
    await graphApi.waitReady();
  }
  await dashboard.testId('intel-retry').first().click();
  await expect(dashboard.testId('intel-callers-count')).toHaveAttribute('data-value', '1');
  await expect(dashboard.testId('intel-callers-item')).toHaveAttribute('data-node-id', 'x:caller');
  await expect(dashboard.testId('intel-callees-count')).toHaveAttribute('data-value', '0');
  for (const section of ['callers', 'callees', 'impact']) await expect(dashboard.testId(`intel-${section}-error`)).toBeHidden();
});
