/** The page's layout: a phone hides the event log; a desktop keeps the sidebar in view while scrolling. */
import { expect, test } from '../support/fixtures';

test.describe('on a 375×667 phone', () => {
  test.use({ viewport: { width: 375, height: 667 } });

  test('the event log is hidden and the live stats are shown', async ({ dashboard }) => {
    await dashboard.open();
    await expect(dashboard.testId('live-stats')).toBeVisible();
    await expect(dashboard.testId('event-log')).toBeHidden();
    await expect(dashboard.testId('graph-view')).toBeVisible();
    // Nothing is wider than the screen.
    expect(await dashboard.page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
  });
});

test.describe('on a 1920×1080 desktop', () => {
  test('the sidebar stays visible while the page scrolls', async ({ dashboard }) => {
    await dashboard.open();
    const page = dashboard.page;
    const sidebar = dashboard.testId('sidebar');
    await expect(dashboard.testId('live-stats')).toBeVisible();
    const scrollable = await page.evaluate(() => document.documentElement.scrollHeight - window.innerHeight);
    expect(scrollable, 'the page must be taller than the screen for this test to mean anything').toBeGreaterThan(100);

    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await expect.poll(() => page.evaluate(() => window.scrollY)).toBeGreaterThan(100);
    for (const id of ['live-stats', 'event-log']) {
      const box = await dashboard.testId(id).boundingBox();
      expect(box, id).not.toBeNull();
      expect(box!.y, `${id} top`).toBeGreaterThanOrEqual(0);
      expect(box!.y, `${id} top`).toBeLessThan(1080);
    }
    const position = await sidebar.evaluate((el) => getComputedStyle(el).position);
    expect(position).toBe('sticky');
    // And the main column really scrolled away beneath it.
    const graph = await dashboard.testId('graph-view').boundingBox();
    expect(graph!.y).toBeLessThan(0);
  });
});
