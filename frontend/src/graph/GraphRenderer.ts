/**
 * Draws a GraphModel with sigma (WebGL) and lays it out with ForceAtlas2 in a web worker, so that neither a large
 * graph nor a stream of changes freezes the page.
 *
 * Two costs are kept in check here: sigma re-indexes the whole graph for every dropped node, so large batches are
 * applied while sigma is detached (one re-index instead of thousands); and the layout only runs for a while after
 * the graph changed, instead of forever.
 */
import Graph from 'graphology';
import { inferSettings } from 'graphology-layout-forceatlas2';
import FA2Layout from 'graphology-layout-forceatlas2/worker';
import Sigma from 'sigma';
import type { CodeGraph, EdgeAttributes, NodeAttributes } from './GraphModel';

export interface Highlight {
  hiddenKinds: ReadonlySet<string>;
  selected: string | null;
  neighbors: ReadonlySet<string>;
}

export interface RendererHandlers {
  clickNode(id: string): void;
  clickStage(): void;
}

/** Batches with more changes (or any drops beyond a few) are applied with sigma detached. */
const DETACH_OVER_CHANGES = 2000;
const DETACH_OVER_DROPS = 20;
const DIMMED = '#e2e8f0';

export class GraphRenderer {
  private readonly sigma: Sigma<NodeAttributes, EdgeAttributes>;
  private readonly placeholder: CodeGraph = new Graph<NodeAttributes, EdgeAttributes>();
  private layout: FA2Layout | null = null;
  private layoutStop: ReturnType<typeof setTimeout> | null = null;
  private highlight: Highlight = { hiddenKinds: new Set(), selected: null, neighbors: new Set() };

  /** Throws when the browser has no WebGL; the caller shows the graph's numbers without the drawing. */
  constructor(
    container: HTMLElement,
    private readonly graph: CodeGraph,
    handlers: RendererHandlers,
  ) {
    this.sigma = new Sigma(graph, container, {
      allowInvalidContainer: true,
      defaultEdgeType: 'line',
      hideEdgesOnMove: true,
      hideLabelsOnMove: true,
      renderEdgeLabels: false,
      labelRenderedSizeThreshold: 7,
      labelDensity: 0.5,
      zIndex: true,
      nodeReducer: (node, data) => this.reduceNode(node, data),
      edgeReducer: (edge, data) => this.reduceEdge(edge, data),
    });
    this.sigma.on('clickNode', ({ node }) => handlers.clickNode(node));
    this.sigma.on('clickStage', () => handlers.clickStage());
  }

  /** Applies `apply` (which mutates the graph) as one change for the drawing. */
  batch(apply: () => void, size: { changes: number; drops: number }): void {
    const detach = size.changes > DETACH_OVER_CHANGES || size.drops > DETACH_OVER_DROPS;
    if (!detach) {
      apply();
      return;
    }
    this.sigma.setGraph(this.placeholder);
    try {
      apply();
    } finally {
      this.sigma.setGraph(this.graph);
    }
  }

  /** Runs the layout for a while (longer for larger graphs), or extends a run in progress. */
  settle(): void {
    const order = this.graph.order;
    if (order < 2) return;
    const ms = Math.min(20_000, 2_000 + order / 2);
    if (!this.layout) {
      this.layout = new FA2Layout(this.graph, { settings: inferSettings(this.graph) });
      this.layout.start();
    }
    if (this.layoutStop !== null) clearTimeout(this.layoutStop);
    this.layoutStop = setTimeout(() => this.stopLayout(), ms);
  }

  get layoutRunning(): boolean {
    return this.layout !== null;
  }

  setHighlight(h: Highlight): void {
    this.highlight = h;
    this.sigma.refresh();
  }

  focus(id: string): void {
    const pos = this.sigma.getNodeDisplayData(id);
    if (!pos) return;
    void this.sigma.getCamera().animate({ x: pos.x, y: pos.y, ratio: 0.2 }, { duration: 500 });
  }

  resetCamera(): void {
    void this.sigma.getCamera().animatedReset({ duration: 300 });
  }

  kill(): void {
    this.stopLayout();
    this.sigma.kill();
  }

  private stopLayout(): void {
    if (this.layoutStop !== null) clearTimeout(this.layoutStop);
    this.layoutStop = null;
    this.layout?.kill();
    this.layout = null;
  }

  private reduceNode(node: string, data: NodeAttributes): Partial<NodeAttributes> & { hidden?: boolean; highlighted?: boolean; zIndex?: number } {
    const h = this.highlight;
    if (h.hiddenKinds.size > 0 && h.hiddenKinds.has(data.kind)) return { ...data, hidden: true };
    if (h.selected === null) return data;
    if (node === h.selected) return { ...data, highlighted: true, zIndex: 2 };
    if (h.neighbors.has(node)) return { ...data, zIndex: 1 };
    return { ...data, color: DIMMED, label: '', zIndex: 0 };
  }

  private reduceEdge(edge: string, data: EdgeAttributes): Partial<EdgeAttributes> & { hidden?: boolean } {
    const selected = this.highlight.selected;
    if (selected === null) return data;
    return this.graph.hasExtremity(edge, selected) ? { ...data, size: 2 } : { ...data, hidden: true };
  }
}
