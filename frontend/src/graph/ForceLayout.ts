/**
 * ForceAtlas2 for the live graph, in a web worker (layoutWorker.ts) so the page never waits for it.
 *
 * Each run starts from the graph's current positions and lasts a given time. Positions are pulled from the worker
 * and written to the graph in one update (one redraw); the next pull waits a few times as long as that redraw
 * took, so the layout never takes more than a fraction of the page's time. A new run replaces the one going.
 */
import { inferSettings } from 'graphology-layout-forceatlas2';
import type { ForceAtlas2Settings } from 'graphology-layout-forceatlas2';
import type { CodeGraph } from './GraphModel';
import { redrawCost } from './redrawCost';

export interface LayoutRequest {
  type: 'run';
  generation: number;
  nodes: ArrayBuffer;
  edges: ArrayBuffer;
  settings: ForceAtlas2Settings;
  runForMs: number;
}

export interface LayoutPositions {
  generation: number;
  /** x, y of each node, in the order of the request's matrix. */
  xy: ArrayBuffer;
  done: boolean;
}

const PPN = 10;
const PPE = 3;
/** Shortest time between two redraws of the layout, and how many times a redraw's cost to wait at least. */
const MIN_PULL_MS = 40;
const PULL_COST_FACTOR = 3;

/**
 * Every ForceAtlas2 setting, tuned to the graph's size. iterate() reads each of them: one left out turns every
 * position into NaN.
 */
export function layoutSettings(order: number): ForceAtlas2Settings {
  return {
    linLogMode: false,
    outboundAttractionDistribution: false,
    adjustSizes: false,
    edgeWeightInfluence: 1,
    barnesHutTheta: 0.5,
    ...inferSettings(order),
  };
}

/** The matrices graphology-layout-forceatlas2's iterate() works on (mass = 1 + degree, weight 1). */
export function toMatrices(graph: CodeGraph): { nodes: Float32Array; edges: Float32Array; index: Map<string, number> } {
  const nodes = new Float32Array(graph.order * PPN);
  const edges = new Float32Array(graph.size * PPE);
  const index = new Map<string, number>();
  let j = 0;
  graph.forEachNode((id, a) => {
    index.set(id, j / PPN);
    nodes[j] = a.x;
    nodes[j + 1] = a.y;
    nodes[j + 6] = 1; // mass
    nodes[j + 7] = 1; // convergence
    nodes[j + 8] = a.size || 1;
    j += PPN;
  });
  j = 0;
  graph.forEachEdge((_e, _a, source, target) => {
    const s = index.get(source)! * PPN;
    const t = index.get(target)! * PPN;
    nodes[s + 6] += 1;
    nodes[t + 6] += 1;
    edges[j] = s;
    edges[j + 1] = t;
    edges[j + 2] = 1;
    j += PPE;
  });
  return { nodes, edges, index };
}

export class ForceLayout {
  private worker: Worker | null = null;
  private generation = 0;
  private index = new Map<string, number>();
  private runningValue = false;
  private pullTimer: ReturnType<typeof setTimeout> | null = null;
  /** What the last redraw cost, in ms; before any, a guess from the graph's size (1 ms per 50 nodes). */
  private redrawMs: number | null = null;

  /** `onMoved` is called after positions were written, to redraw. */
  constructor(
    private readonly graph: CodeGraph,
    private readonly onMoved: () => void,
  ) {}

  get running(): boolean {
    return this.runningValue;
  }

  run(ms: number): void {
    if (this.graph.order < 2) return;
    const { nodes, edges, index } = toMatrices(this.graph);
    this.index = index;
    this.generation += 1;
    const worker = this.ensureWorker();
    const request: LayoutRequest = {
      type: 'run',
      generation: this.generation,
      nodes: nodes.buffer as ArrayBuffer,
      edges: edges.buffer as ArrayBuffer,
      settings: layoutSettings(this.graph.order),
      runForMs: ms,
    };
    worker.postMessage(request, [request.nodes, request.edges]);
    this.runningValue = true;
    // The first positions wait as long as later ones would: a run often starts right after a full redraw.
    this.schedulePull(this.pullDelay(this.redrawMs ?? this.graph.order / 50));
  }

  stop(): void {
    this.generation += 1;
    this.clearPull();
    this.worker?.postMessage({ type: 'stop' });
    this.runningValue = false;
  }

  kill(): void {
    this.stop();
    this.worker?.terminate();
    this.worker = null;
  }

  private ensureWorker(): Worker {
    if (!this.worker) {
      this.worker = new Worker(new URL('./layoutWorker.ts', import.meta.url), { type: 'module' });
      this.worker.onmessage = (e: MessageEvent<LayoutPositions>) => this.apply(e.data);
    }
    return this.worker;
  }

  private pullDelay(redrawMs: number): number {
    return Math.max(MIN_PULL_MS, PULL_COST_FACTOR * redrawMs);
  }

  private schedulePull(ms: number): void {
    this.clearPull();
    this.pullTimer = setTimeout(() => {
      this.pullTimer = null;
      this.worker?.postMessage({ type: 'pull' });
    }, ms);
  }

  private clearPull(): void {
    if (this.pullTimer !== null) clearTimeout(this.pullTimer);
    this.pullTimer = null;
  }

  private apply(msg: LayoutPositions): void {
    if (msg.generation !== this.generation) return;
    const started = performance.now();
    if (msg.done) {
      this.runningValue = false;
      this.clearPull();
    }
    const xy = new Float32Array(msg.xy);
    const index = this.index;
    // Written into the attribute objects without one graph event per update: the drawing is told once, below
    // (sigma answers a graph-wide update event by re-reading every node twice).
    this.graph.forEachNode((id, a) => {
      const i = index.get(id);
      if (i !== undefined && Number.isFinite(xy[2 * i]) && Number.isFinite(xy[2 * i + 1])) {
        a.x = xy[2 * i];
        a.y = xy[2 * i + 1];
      }
    });
    this.onMoved();
    if (msg.done) return;
    const generation = this.generation;
    void redrawCost(started).then((ms) => {
      this.redrawMs = ms;
      if (generation !== this.generation || !this.runningValue) return;
      this.schedulePull(this.pullDelay(ms));
    });
  }
}
