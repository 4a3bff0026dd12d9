/**
 * Web worker that runs ForceAtlas2 on the matrices ForceLayout sends. It iterates in short slices (so it can read
 * messages in between) and answers each `pull` with the current positions: the page pulls only as often as it
 * can afford to redraw, so a large graph on a slow machine is redrawn less often instead of freezing the page.
 */
import iterate from 'graphology-layout-forceatlas2/iterate';
import type { LayoutPositions, LayoutRequest } from './ForceLayout';

const PPN = 10; // numbers per node in the matrix (graphology-layout-forceatlas2's layout)
const SLICE_MS = 30;

let state: { req: LayoutRequest; nodes: Float32Array; edges: Float32Array; until: number } | null = null;
let timer: ReturnType<typeof setTimeout> | null = null;

function post(done: boolean): void {
  if (!state) return;
  const { nodes, req } = state;
  const xy = new Float32Array((nodes.length / PPN) * 2);
  for (let i = 0, j = 0; i < nodes.length; i += PPN, j += 2) {
    xy[j] = nodes[i];
    xy[j + 1] = nodes[i + 1];
  }
  const msg: LayoutPositions = { generation: req.generation, xy: xy.buffer as ArrayBuffer, done };
  (self as unknown as Worker).postMessage(msg, [msg.xy]);
}

function step(): void {
  timer = null;
  if (!state) return;
  const sliceEnd = Math.min(state.until, performance.now() + SLICE_MS);
  do iterate(state.req.settings, state.nodes, state.edges);
  while (performance.now() < sliceEnd);
  if (performance.now() >= state.until) {
    post(true);
    state = null;
    return;
  }
  timer = setTimeout(step, 0);
}

self.onmessage = (e: MessageEvent<LayoutRequest | { type: 'stop' } | { type: 'pull' }>) => {
  const msg = e.data;
  if (msg.type === 'pull') return post(false);
  if (timer !== null) clearTimeout(timer);
  timer = null;
  state = null;
  if (msg.type === 'run') {
    state = {
      req: msg,
      nodes: new Float32Array(msg.nodes),
      edges: new Float32Array(msg.edges),
      until: performance.now() + msg.runForMs,
    };
    step();
  }
};
