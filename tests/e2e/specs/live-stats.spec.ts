/** LiveStats: the connection, the counters and the ping, against the real gateway and graph-api. */
import { expect, needs, test } from '../support/fixtures';

test.beforeEach(({ stack }) => needs(stack, 'graph-api', 'ws-gateway'));

test('the WebSocket connects on page load, for the chosen project', async ({ page, dashboard, project }) => {
  const socket = page.waitForEvent('websocket');
  await dashboard.open();
  const ws = await socket;
  expect(new URL(ws.url()).pathname).toBe('/ws/events');
  expect(new URL(ws.url()).searchParams.get('project')).toBe(project);
  await dashboard.expectConnected();
  await expect(dashboard.state).toHaveText('Connected');
});

test('the connection indicator pulses while connected', async ({ dashboard }) => {
  await dashboard.openConnected();
  const indicator = dashboard.testId('connection-indicator');
  await expect(indicator).toHaveAttribute('data-state', 'open');
  const pulse = dashboard.testId('connection-pulse');
  await expect(pulse).toBeVisible();
  const animation = await pulse.evaluate((el) => {
    const s = getComputedStyle(el);
    return { name: s.animationName, duration: s.animationDuration, iterations: s.animationIterationCount };
  });
  expect(animation.name).not.toBe('none');
  expect(animation.iterations).toBe('infinite');
  expect(parseFloat(animation.duration)).toBeGreaterThan(0);
});

test('the counters count the changes as they come, and the frames they came in', async ({ dashboard, api, frames }) => {
  await dashboard.openConnected();
  await dashboard.expectReceived({ changes: 0, frames: 0 });
  await expect(dashboard.testId('last-event-time')).toHaveText('never');
  await api.createNode('ev:a', 'alpha');
  await api.createNode('ev:b', 'beta');
  await api.createRelationship('ev:r', 'calls', 'ev:a', 'ev:b');
  await dashboard.expectReceived({ changes: 3, frames: 3 });
  await expect(dashboard.testId('last-event-time')).toHaveText(/^\d+ s ago$/);

  // Deleting a node is one change set: its relationship first, then the node.
  await api.deleteNode('ev:b');
  await dashboard.expectReceived({ changes: 5, frames: 4 });
  const entries = await frames.waitForEntries(4);
  expect(entries.every((e) => e.isChangeSet), 'every graph change comes in a change set').toBe(true);
  expect(entries[3].changes.map((c) => [c.index, c.type, c.entity.id])).toEqual([
    [0, 'relationship_deleted', 'ev:r'],
    [1, 'node_deleted', 'ev:b'],
  ]);
  await expect(dashboard.testId('frame-count')).toHaveText('in 4 frames');
});

test('node and relationship counts start from the stats and follow the events', async ({ dashboard, api }) => {
  await api.createNode('cnt:a', 'a', 'file');
  await api.createNode('cnt:b', 'b', 'class');
  await api.createRelationship('cnt:r1', 'contains', 'cnt:a', 'cnt:b');
  await dashboard.openConnected();
  await dashboard.expectCounts({ nodes: 2, relationships: 1 });

  await api.createNode('cnt:c', 'c', 'method');
  await api.createRelationship('cnt:r2', 'defines', 'cnt:b', 'cnt:c');
  await dashboard.expectCounts({ nodes: 3, relationships: 2 });

  // Deleting a node deletes its relationships too: both counts follow.
  await api.deleteNode('cnt:b');
  const stats = await api.stats();
  expect(stats).toMatchObject({ nodes: 2, relationships: 0 });
  await dashboard.expectCounts(stats);
  await expect(dashboard.testId('kind-count-class')).toContainText('0');
  await expect(dashboard.testId('kind-count-file')).toContainText('1');
});

test('the ping button shows the round trip', async ({ dashboard }) => {
  await dashboard.openConnected();
  await dashboard.testId('ping-button').click();
  await expect(dashboard.testId('ping-result')).toHaveText(/^\d+ ms$/);
  const rtt = parseInt((await dashboard.testId('ping-result').textContent()) ?? '', 10);
  expect(rtt).toBeLessThan(5000);
});
