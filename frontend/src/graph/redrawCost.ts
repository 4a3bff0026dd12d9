/**
 * What a change to the graph cost the page, measured from `started` until the frame after the redraw: the redraw
 * itself runs in the next frame, and the one after that starts only once the drawing was handed over, so GPU work
 * that blocks the page (software WebGL above all) is counted too. Used to space out the next change.
 */
export function redrawCost(started: number): Promise<number> {
  return new Promise((resolve) =>
    requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - started))),
  );
}
