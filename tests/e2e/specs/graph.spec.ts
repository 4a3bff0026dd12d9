/** GraphView: paged loading, live growth, search and details, kind filters. */
import { PNG } from 'pngjs';
import { expect, needs, nodeOps, test } from '../support/fixtures';

test.beforeEach(({ stack }) => needs(stack, 'graph-api'));

test('loads the graph page by page, never all of it in one response', async ({ dashboard, api, page }) => {
  await api.batch(nodeOps('big', 2600));
  const pages: URL[] = [];
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.pathname === '/api/graph/subgraph') pages.push(url);
  });
  await dashboard.open();
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', '2600', { timeout: 60_000 });
  await expect(dashboard.testId('graph-relationship-count')).toHaveAttribute('data-value', '2599');
  await expect(dashboard.testId('graph-loading')).toBeHidden();
  expect(pages.length).toBeGreaterThan(1);
  for (const url of pages) expect(Number(url.searchParams.get('limit'))).toBeGreaterThan(0);
  expect(pages[0].searchParams.get('cursor')).toBeNull();
  expect(pages[1].searchParams.get('cursor')).toBeTruthy();
});

test('shows nodes that are added while the page is open', async ({ dashboard, api, stack }) => {
  needs(stack, 'ws-gateway');
  await api.batch(nodeOps('live', 3));
  await dashboard.openConnected();
  const count = dashboard.testId('graph-node-count');
  await expect(count).toHaveAttribute('data-value', '3');
  await expect(dashboard.testId('graph-empty')).toBeHidden();

  await api.createNode('live:new', 'freshly_added_function');
  await api.createRelationship('live:cnew', 'defines', 'live:0', 'live:new');
  await expect(count).toHaveAttribute('data-value', '4');
  await expect(dashboard.testId('graph-relationship-count')).toHaveAttribute('data-value', '3');

  // The new node can be found, focused and inspected, with its neighbour.
  await dashboard.testId('graph-search').fill('freshly_added');
  const result = dashboard.testId('graph-search-result');
  await expect(result).toHaveCount(1);
  await result.click();
  await expect(dashboard.testId('node-details')).toHaveAttribute('data-node-id', 'live:new');
  await expect(dashboard.testId('node-details-name')).toHaveText('freshly_added_function');
  await expect(dashboard.testId('node-neighbor')).toHaveCount(1);
  await expect(dashboard.testId('node-neighbor')).toContainText('live_0');

  // And it goes away when deleted, with its relationship (both in one change set).
  await api.deleteNode('live:new');
  await expect(count).toHaveAttribute('data-value', '3');
  await expect(dashboard.testId('graph-relationship-count')).toHaveAttribute('data-value', '2');
  await expect(dashboard.testId('node-details')).toBeHidden();
});

test('clicking a node on the canvas shows its details and neighbours', async ({ dashboard, api }) => {
  await api.batch(nodeOps('click', 12));
  await dashboard.open();
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', '12');
  // Searching selects the node and sends the camera to it.
  await dashboard.testId('graph-search').fill('click_0');
  await dashboard.testId('graph-search-result').first().click();
  const details = dashboard.testId('node-details');
  await expect(details).toHaveAttribute('data-node-id', 'click:0');
  await dashboard.testId('node-details-close').click();
  await expect(details).toBeHidden();

  // One real click where the node is drawn, once nothing moves any more: sigma's own hit test must find it.
  const at = await dashboard.focusedNodeAtRest('click:0');
  await dashboard.testId('graph-canvas').click({ position: at });
  await expect(details).toHaveAttribute('data-node-id', 'click:0');
  await expect(dashboard.testId('node-details-name')).toHaveText('click_0');
  await expect(dashboard.testId('node-neighbor')).toHaveCount(11);
});

test('kinds can be hidden and shown again', async ({ dashboard, api }) => {
  await api.batch(nodeOps('kinds', 4));
  await dashboard.open();
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', '4');
  const fn = dashboard.testId('graph-kind-filter-function');
  await expect(fn).toHaveAttribute('aria-pressed', 'true');
  await fn.click();
  await expect(fn).toHaveAttribute('aria-pressed', 'false');
  await fn.click();
  await expect(fn).toHaveAttribute('aria-pressed', 'true');
});

/** Pixels of a screenshot that differ clearly from its top-left pixel (the background). */
function drawnPixels(png: Buffer): number {
  const { data } = PNG.sync.read(png);
  let drawn = 0;
  for (let i = 0; i < data.length; i += 4) {
    const d = Math.abs(data[i] - data[0]) + Math.abs(data[i + 1] - data[1]) + Math.abs(data[i + 2] - data[2]);
    if (d > 60) drawn++;
  }
  return drawn;
}

test('the nodes are drawn on the canvas', async ({ dashboard, api }) => {
  await api.batch(nodeOps('draw', 30));
  await dashboard.open();
  const canvas = dashboard.testId('graph-canvas');
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', '30');
  await expect(dashboard.testId('graph-renderer-error')).toBeHidden();
  // sigma draws into WebGL canvases inside the container: 30 nodes colour hundreds of pixels.
  await expect.poll(async () => drawnPixels(await canvas.screenshot())).toBeGreaterThan(500);
});
