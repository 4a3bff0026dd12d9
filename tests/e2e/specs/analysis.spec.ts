/** AnalysisProgress and the Re-analyze button, with the real analysis-worker analysing a generated repository. */
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from '../support/stack';
import { writeFixtureRepo } from '../support/fixtureRepo';
import { expect, needs, test } from '../support/fixtures';

test.beforeEach(({ stack }) => needs(stack, 'graph-api', 'ws-gateway', 'analysis-worker'));

test('the progress appears during a re-analysis, shows a percentage, and the counts follow', async ({
  dashboard,
  api,
  stack,
  project,
  frames,
}) => {
  const repo = writeFixtureRepo(stack.fixturesDir, project, 150);
  await dashboard.openConnected();
  await dashboard.expectCounts({ nodes: 0, relationships: 0 });

  await dashboard.testId('reanalyze-path').fill(repo);
  await dashboard.testId('reanalyze-mode').selectOption('full');
  await dashboard.testId('reanalyze-button').click();
  await expect(dashboard.testId('reanalyze-job')).toBeVisible();

  const progress = dashboard.testId('analysis-progress');
  await expect(progress).toBeVisible();
  await expect(dashboard.testId('analysis-percent')).toHaveText(/^\d{1,3}%$/);
  await expect(dashboard.testId('analysis-files')).toHaveText(/^\d+ \/ \d+ files$/);
  await expect(dashboard.testId('analysis-status')).toHaveText(/running|completed/);
  if (process.env.E2E_UPDATE_SCREENSHOT) {
    const file = path.join(REPO, 'docs/screenshots/dashboard-analysis.png');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await dashboard.page.screenshot({ path: file });
  }

  await expect(dashboard.testId('analysis-status')).toHaveText('completed', { timeout: 90_000 });
  await expect(dashboard.testId('analysis-percent')).toHaveText('100%');
  await expect(dashboard.testId('analysis-messages')).toContainText('Completed');
  // The counts equal the server's, and the analysis wrote a real graph.
  const stats = await api.stats();
  expect(stats.nodes).toBeGreaterThan(150);
  expect(stats.node_kinds).toMatchObject({ class: 150 });
  await dashboard.expectCounts(stats);
  await expect(dashboard.testId('graph-node-count')).toHaveAttribute('data-value', String(stats.nodes));
  // The page counted each change and frame the wire carried once. The graph changes came in change sets of many
  // changes each; only job events came one per frame.
  const shown = async (id: string) => Number(await dashboard.testId(id).getAttribute('data-value'));
  const [changes, frameCount] = [await shown('change-count'), await shown('frame-count')];
  await expect.poll(() => [frames.changes(), frames.entries().length]).toEqual([changes, frameCount]);
  const entries = frames.entries();
  const sets = entries.filter((e) => e.isChangeSet);
  expect(entries.filter((e) => !e.isChangeSet).every((e) => e.changes[0].type.startsWith('analysis_'))).toBe(true);
  expect(sets.reduce((n, s) => n + s.changes.length, 0)).toBeGreaterThan(2 * sets.length);
  // It hides itself a moment after completion.
  await expect(progress).toBeHidden({ timeout: 15_000 });
});

test('the cancel button stops a running analysis', async ({ dashboard, api, stack, project }) => {
  const repo = writeFixtureRepo(stack.fixturesDir, project, Number(process.env.E2E_CANCEL_FILES ?? 4000));
  await dashboard.openConnected();
  await dashboard.testId('reanalyze-path').fill(repo);
  await dashboard.testId('reanalyze-mode').selectOption('full');
  await dashboard.testId('reanalyze-button').click();

  const job = dashboard.testId('analysis-job');
  await expect(job).toHaveAttribute('data-status', 'running');
  const jobId = (await job.getAttribute('data-job-id'))!;
  await dashboard.testId('analysis-cancel').click();
  await expect(job).toHaveAttribute('data-status', /cancelling|cancelled/);
  await expect(job).toHaveAttribute('data-status', 'cancelled', { timeout: 30_000 });
  await expect(dashboard.testId('analysis-messages')).toContainText('Cancelled');
  expect((await api.job(jobId)).status).toBe('cancelled');
  await expect(dashboard.testId('analysis-progress')).toBeHidden({ timeout: 15_000 });
});
