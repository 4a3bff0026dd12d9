/** EventLog: what it shows, its filters and its clear button. */
import { expect, needs, test } from '../support/fixtures';

test.beforeEach(({ stack }) => needs(stack, 'graph-api', 'ws-gateway'));

test('the event log shows on a 1920×1080 screen, coloured by kind of change', async ({ dashboard, api, frames }) => {
  await dashboard.openConnected();
  await expect(dashboard.testId('event-log')).toBeVisible();
  await api.createNode('log:a', 'alpha');
  await api.createNode('log:b', 'beta');
  await api.createRelationship('log:r', 'calls', 'log:a', 'log:b');
  await api.deleteNode('log:b');
  const entries = dashboard.testId('event-log-entry');
  await expect(entries).toHaveCount(5); // 2 nodes, 1 relationship, then the node and its relationship deleted
  // Newest first.
  await expect(entries.first()).toHaveAttribute('data-tone', 'deleted');
  await expect(entries.last()).toHaveAttribute('data-type', 'node_added');
  await expect(entries.last()).toHaveAttribute('data-tone', 'added');
  await expect(entries.last()).toContainText('log:a');
  await expect(entries.last()).toContainText('name=alpha');
  await expect(entries.last()).toContainText(/\d+ s ago/);
  expect(await entries.last().evaluate((el) => getComputedStyle(el).borderLeftColor)).not.toBe(
    await entries.first().evaluate((el) => getComputedStyle(el).borderLeftColor),
  );

  // The delete is one change set of two changes, shown one per line, each naming the set's entry and its position.
  const deleteSet = (await frames.waitForEntries(4))[3];
  const [node, relationship] = [entries.nth(0), entries.nth(1)];
  await expect(node).toHaveAttribute('data-type', 'node_deleted');
  await expect(relationship).toHaveAttribute('data-type', 'relationship_deleted');
  for (const [line, index] of [
    [node, 1],
    [relationship, 0],
  ] as const) {
    await expect(line).toHaveAttribute('data-entry-id', deleteSet.id);
    await expect(line).toHaveAttribute('data-index', String(index));
    await expect(line.getByTestId('event-log-position')).toHaveText(`${deleteSet.id} #${index}`);
  }
});

test('the filter buttons show only events of one type', async ({ dashboard, api }) => {
  await dashboard.openConnected();
  await api.createNode('flt:a', 'alpha');
  await api.createNode('flt:b', 'beta');
  await api.createRelationship('flt:r', 'calls', 'flt:a', 'flt:b');
  const entries = dashboard.testId('event-log-entry');
  await expect(entries).toHaveCount(3);

  await dashboard.testId('event-filter-relationship_added').click();
  await expect(entries).toHaveCount(1);
  await expect(entries.first()).toHaveAttribute('data-type', 'relationship_added');
  await expect(dashboard.testId('event-filter-relationship_added')).toHaveAttribute('aria-pressed', 'true');

  await dashboard.testId('event-filter-node_added').click();
  await expect(entries).toHaveCount(2);
  for (const e of await entries.all()) await expect(e).toHaveAttribute('data-type', 'node_added');

  await dashboard.testId('event-filter-all').click();
  await expect(entries).toHaveCount(3);
});

test('the clear button empties the log, which then fills again', async ({ dashboard, api }) => {
  await dashboard.openConnected();
  await api.createNode('clr:a', 'alpha');
  await api.createNode('clr:b', 'beta');
  const entries = dashboard.testId('event-log-entry');
  await expect(entries).toHaveCount(2);
  await dashboard.testId('event-log-clear').click();
  await expect(entries).toHaveCount(0);
  await expect(dashboard.testId('event-log-empty')).toBeVisible();
  await api.createNode('clr:c', 'gamma');
  await expect(entries).toHaveCount(1);
});
