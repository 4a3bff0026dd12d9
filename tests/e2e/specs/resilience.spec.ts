/** The connection comes back by itself: after the browser was offline, and after the gateways were down. */
import { expect, needs, nodeOps, test } from '../support/fixtures';
import { redis, StackUnit } from '../support/stack';

test.beforeEach(({ stack }) => needs(stack, 'graph-api', 'ws-gateway'));

test('the connection recovers after the browser goes offline and back online', async ({ dashboard, context }) => {
  await dashboard.openConnected();
  await context.setOffline(true);
  await expect(dashboard.state).toHaveAttribute('data-state', 'waiting');
  await expect(dashboard.state).toContainText('Offline');
  await expect(dashboard.testId('connection-pulse')).toBeHidden();
  await context.setOffline(false);
  await dashboard.expectConnected();
  await expect(dashboard.testId('connection-pulse')).toBeVisible();
});

test("after an offline/online cycle the page's counts equal the server's", async ({
  dashboard,
  context,
  api,
  page,
  frames,
}) => {
  await api.batch(nodeOps('off', 5));
  await dashboard.openConnected();
  await dashboard.expectCounts({ nodes: 5, relationships: 4 });
  await api.createNode('off:before', 'before');
  await dashboard.expectCounts({ nodes: 6, relationships: 4 });

  await context.setOffline(true);
  await expect(dashboard.state).toHaveAttribute('data-state', 'waiting');
  // Changes while the page cannot hear them.
  await api.batch(nodeOps('gap', 7));
  await api.deleteNode('off:3');
  await api.createNode('off:late', 'late');
  const resumes: string[] = [];
  page.on('websocket', (ws) => resumes.push(new URL(ws.url()).searchParams.get('since') ?? ''));

  await context.setOffline(false);
  await dashboard.expectConnected();
  const stats = await api.stats();
  expect(stats).toMatchObject({ nodes: 6 + 7 - 1 + 1, relationships: 4 + 6 - 1 });
  await dashboard.expectCounts(stats);
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', String(stats.nodes));
  // It resumed from where it was instead of starting over.
  expect(resumes.length).toBeGreaterThan(0);
  expect(resumes[0]).toMatch(/^\d+-\d+$/);
  // Each change was counted once: 5+4 seeded before the page opened, 1 before going offline, then the gap (the
  // batch, the delete with its relationship, the late node) ...
  const changes = Number(await dashboard.testId('change-count').getAttribute('data-value'));
  expect(changes).toBe(1 + 13 + 2 + 1);
  // ... in one change set per write, each counted once however often a reconnect replayed it.
  const entries = await frames.waitForEntries(4);
  expect(entries.map((e) => e.changes.length)).toEqual([1, 13, 2, 1]);
  await dashboard.expectReceived({ changes, frames: entries.length });
});

test('a page whose position was trimmed from the stream resyncs from a snapshot', async ({
  stack,
  dashboard,
  context,
  api,
  project,
}) => {
  test.skip(!stack.redisUrl, 'needs the Redis of the stack');
  await api.batch(nodeOps('trim', 4));
  await dashboard.openConnected();
  await api.createNode('trim:seen', 'seen');
  await dashboard.expectCounts({ nodes: 5, relationships: 3 });

  await context.setOffline(true);
  await expect(dashboard.state).toHaveAttribute('data-state', 'waiting');
  await api.batch(nodeOps('lost', 6));
  await api.deleteNode('trim:2');
  // The stream keeps only its newest entry: the page's position is gone from it.
  await redis(stack, 'XTRIM', `code_graph:{${project}}:cdc`, 'MAXLEN', '1');

  await context.setOffline(false);
  await expect(dashboard.testId('connection-resyncs')).toHaveAttribute('data-value', '1');
  await dashboard.expectConnected();
  const stats = await api.stats();
  expect(stats).toMatchObject({ nodes: 5 + 6 - 1, relationships: 3 + 5 - 1 });
  await dashboard.expectCounts(stats);
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', String(stats.nodes));
  await expect(dashboard.testId('graph-relationship-count')).toHaveAttribute('data-value', String(stats.relationships));
  // Live again after the resync.
  await api.createNode('trim:after', 'after');
  await dashboard.expectCounts({ nodes: stats.nodes + 1, relationships: stats.relationships });
});

test('a gateway that drains (1012) hands the page to another replica without losing or repeating events', async ({
  stack,
  dashboard,
  api,
  page,
}) => {
  test.skip(!stack.runDir, 'needs a stack this suite started');
  const gateways = StackUnit.list(stack.runDir!, 'ws-gateway');
  test.skip(gateways.length < 2, 'needs two gateway replicas');
  const sockets: string[] = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await dashboard.openConnected();
  // Each write is one change set of one change.
  let expected = 0;
  // One replica at a time, so the page is moved at least once, whichever replica it was on.
  for (const [i, gateway] of gateways.entries()) {
    await api.createNode(`drain:${i}:before`, `before_${i}`);
    expected += 1;
    await dashboard.expectReceived({ changes: expected, frames: expected });
    await gateway.stop();
    try {
      await api.createNode(`drain:${i}:during`, `during_${i}`);
      expected += 1;
      await dashboard.expectConnected();
      await dashboard.expectReceived({ changes: expected, frames: expected });
    } finally {
      gateway.start();
    }
  }
  expect(sockets.length).toBeGreaterThan(1);
  await expect(dashboard.testId('connection-last-close')).toHaveAttribute('data-code', '1012');
  for (const url of sockets.slice(1)) expect(new URL(url).searchParams.get('since')).toMatch(/^\d+-\d+$/);
  await dashboard.expectCounts(await api.stats());
  // Wait for the restarted replicas, so the next test starts with both.
  for (const g of gateways) await g.waitReady();
});

test.describe('with the gateways down', () => {
  test('the page loads without errors, says it is offline, and recovers by itself', async ({
    stack,
    dashboard,
    page,
    api,
  }) => {
    test.skip(!stack.runDir, 'needs a stack this suite started');
    const gateways = StackUnit.list(stack.runDir!, 'ws-gateway');
    expect(gateways.length).toBeGreaterThan(0);
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      // The browser itself logs each refused WebSocket; that is the expected part.
      if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text())) consoleErrors.push(m.text());
    });
    await Promise.all(gateways.map((g) => g.stop()));
    try {
      await api.createNode('down:a', 'a');
      await dashboard.open();
      await expect(dashboard.state).toHaveAttribute('data-state', /waiting|connecting/);
      await expect(dashboard.state).toContainText(/Offline|Reconnecting/);
      await expect(dashboard.testId('connection-pulse')).toBeHidden();
      // graph-api is up: the rest of the page works.
      await dashboard.expectCounts({ nodes: 1, relationships: 0 });
      await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', '1');
    } finally {
      gateways.forEach((g) => g.start());
    }
    await expect(dashboard.state).toHaveAttribute('data-state', 'open', { timeout: 60_000 });
    await api.createNode('down:b', 'b');
    await dashboard.expectCounts({ nodes: 2, relationships: 0 });
    expect(consoleErrors).toEqual([]);
  });
});
