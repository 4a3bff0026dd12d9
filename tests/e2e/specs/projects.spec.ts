/** The project selector: projects from graph-api, and a switch that shows the other project's graph and events. */
import { TestApi } from '../support/api';
import { expect, needs, nodeOps, test } from '../support/fixtures';

test.beforeEach(({ stack }) => needs(stack, 'graph-api', 'ws-gateway'));

test('switching project shows that project, live', async ({ dashboard, api, stack, project, page }) => {
  const other = `${project}-b`;
  const otherApi = new TestApi(stack.apiUrl, other);
  await api.batch(nodeOps('one', 2));
  await otherApi.batch(nodeOps('two', 5));

  await dashboard.openConnected();
  await dashboard.expectCounts({ nodes: 2, relationships: 1 });
  const select = dashboard.testId('project-select');
  await expect(select.locator(`option[value="${other}"]`)).toHaveCount(1);

  const socket = page.waitForEvent('websocket', (ws) => new URL(ws.url()).searchParams.get('project') === other);
  await select.selectOption(other);
  await socket;
  await expect(page).toHaveURL(new RegExp(`project=${other}`));
  await dashboard.expectConnected();
  await dashboard.expectCounts({ nodes: 5, relationships: 4 });
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', '5');

  // Only the chosen project's changes count now.
  await api.createNode('one:late', 'late');
  await otherApi.createNode('two:late', 'late');
  await dashboard.expectCounts({ nodes: 6, relationships: 4 });
  await dashboard.expectReceived({ changes: 1, frames: 1 });
});
