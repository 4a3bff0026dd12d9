/**
 * Draws a GraphModel with sigma (WebGL) and lays it out with ForceAtlas2 in a web worker, so that neither a large
 * graph nor a stream of changes freezes the page.
 *
 * Two costs are kept in check here: sigma re-indexes the whole graph for every dropped node, so large batches are
 * applied while sigma is detached (one re-index instead of thousands); and the layout only runs for a while after
 * the graph changed, instead of forever, restarted at most once a second while changes keep coming.
 *
 * What the drawing shows is also published as data attributes of the container (see publishViewState), for tests,
 * debugging and assistive tooling: whether the layout or the camera still moves things, and where the node the
 * camera last focused is drawn.
 */
import Graph from 'graphology';
import Sigma from 'sigma';
import { NodeCircleProgram, NodePointProgram } from 'sigma/rendering';
import { ForceLayout } from './ForceLayout';
import type { EdgeDisplayData, NodeDisplayData } from 'sigma/types';
import type { CodeGraph, EdgeAttributes, NodeAttributes } from './GraphModel';

export interface Highlight {
  hiddenKinds: ReadonlySet<string>;
  selected: string | null;
  neighbors: ReadonlySet<string>;
  /**
   * A set to show instead of the selection's neighbours (the selected node's impact set): these nodes keep their
   * colour and the relationships among them are drawn; everything else is dimmed. Null: the usual view.
   */
  emphasized?: ReadonlySet<string> | null;
}

export interface RendererHandlers {
  clickNode(id: string): void;
  clickStage(): void;
}

/** Batches with more changes (or any drops beyond a few) are applied with sigma detached. */
const DETACH_OVER_CHANGES = 2000;
const DETACH_OVER_DROPS = 20;
const DIMMED = '#e2e8f0';
/** How many emphasized node ids the container lists for tests (`data-emphasized-nodes`); the count is always exact. */
const PUBLISH_EMPHASIZED_UP_TO = 500;
/** A small emphasized set has every label drawn; a larger one keeps sigma's label density. */
const LABEL_EMPHASIZED_UP_TO = 50;
/**
 * Past this many relationships only the selected node's are drawn: tens of thousands of lines are a grey fog
 * that costs more to draw than it tells.
 */
const DRAW_ALL_EDGES_UP_TO = 20_000;
/** Past this many nodes they are drawn as points, which is several times cheaper than discs. */
const DISCS_UP_TO = 10_000;
/** A running layout picks up structural changes at most this often. */
const LAYOUT_RESTART_MS = 1000;

export class GraphRenderer {
  private readonly sigma: Sigma<NodeAttributes, EdgeAttributes>;
  private readonly placeholder: CodeGraph = new Graph<NodeAttributes, EdgeAttributes>();
  private readonly layout: ForceLayout;
  private layoutStartedAt = 0;
  private layoutRestart: ReturnType<typeof setTimeout> | null = null;
  private suspended = false;
  private highlight: Highlight = { hiddenKinds: new Set(), selected: null, neighbors: new Set() };
  /** The node the camera was last sent to (focus()); it stays focused after its selection is cleared. */
  private focused: string | null = null;
  /** `data-emphasized-*` as last computed; null when the highlight or the graph changed since. */
  private emphasizedView: { count: string | undefined; nodes: string | undefined } | null = null;
  private readonly resizeObserver: ResizeObserver;

  /** Throws when the browser has no WebGL; the caller shows the graph's numbers without the drawing. */
  constructor(
    container: HTMLElement,
    private readonly graph: CodeGraph,
    handlers: RendererHandlers,
  ) {
    this.sigma = new Sigma<NodeAttributes, EdgeAttributes>(graph, container, {
      allowInvalidContainer: true,
      nodeProgramClasses: { circle: NodeCircleProgram, point: NodePointProgram },
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
    this.layout = new ForceLayout(graph, () =>
      this.sigma.refresh({ partialGraph: { nodes: graph.nodes() }, skipIndexation: false, schedule: true }),
    );
    this.sigma.on('afterRender', () => this.publishViewState());
    // sigma follows window resizes only; the container also changes size with the page around it (a scrollbar
    // coming or going), and a drawing of the old size puts nodes where the mouse does not find them.
    this.resizeObserver = new ResizeObserver(() => this.sigma.scheduleRefresh());
    this.resizeObserver.observe(container);
    this.publishViewState();
  }

  /** Stops drawing changes until resume(): the initial load is drawn once, when it is complete. */
  suspend(): void {
    if (this.suspended) return;
    this.suspended = true;
    this.sigma.setGraph(this.placeholder);
  }

  resume(): void {
    if (!this.suspended) return;
    this.suspended = false;
    this.fitNodeProgram();
    this.sigma.setGraph(this.graph);
  }

  /** Applies `apply` (which mutates the graph) as one change for the drawing. */
  batch(apply: () => void, size: { changes: number; drops: number }): void {
    this.emphasizedView = null;
    const detach = size.changes > DETACH_OVER_CHANGES || size.drops > DETACH_OVER_DROPS;
    if (!detach || this.suspended) {
      apply();
      if (!this.suspended) this.fitNodeProgram();
      return;
    }
    this.sigma.setGraph(this.placeholder);
    try {
      apply();
    } finally {
      this.fitNodeProgram();
      this.sigma.setGraph(this.graph);
    }
  }

  /** Runs the layout for a while (longer for larger graphs) after the graph changed. */
  settle(): void {
    if (this.layoutRestart !== null) return;
    const wait = this.layout.running ? Math.max(0, this.layoutStartedAt + LAYOUT_RESTART_MS - Date.now()) : 0;
    this.layoutRestart = setTimeout(() => {
      this.layoutRestart = null;
      this.layoutStartedAt = Date.now();
      this.layout.run(Math.min(20_000, 3_000 + this.graph.order / 3));
      this.publishViewState();
    }, wait);
    this.publishViewState();
  }

  setHighlight(h: Highlight): void {
    this.highlight = h;
    this.emphasizedView = null;
    this.sigma.refresh();
    this.publishViewState();
  }

  focus(id: string): void {
    const pos = this.sigma.getNodeDisplayData(id);
    if (!pos) return;
    this.focused = id;
    void this.sigma.getCamera().animate({ x: pos.x, y: pos.y, ratio: 0.2 }, { duration: 500 });
    this.publishViewState();
  }

  /** Sends the camera to frame every drawn node of `ids` (the highlighted impact set), as close as focus() at most. */
  focusSet(ids: Iterable<string>): void {
    let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const id of ids) {
      const d = this.sigma.getNodeDisplayData(id);
      if (!d || d.hidden) continue;
      [minX, minY, maxX, maxY] = [Math.min(minX, d.x), Math.min(minY, d.y), Math.max(maxX, d.x), Math.max(maxY, d.y)];
    }
    if (minX === Infinity) return;
    this.focused = null;
    const ratio = Math.min(1, Math.max(0.2, 1.4 * Math.max(maxX - minX, maxY - minY)));
    void this.sigma.getCamera().animate({ x: (minX + maxX) / 2, y: (minY + maxY) / 2, ratio }, { duration: 500 });
    this.publishViewState();
  }

  resetCamera(): void {
    void this.sigma.getCamera().animatedReset({ duration: 300 });
  }

  kill(): void {
    if (this.layoutRestart !== null) clearTimeout(this.layoutRestart);
    this.resizeObserver.disconnect();
    this.layout.kill();
    this.sigma.kill();
  }

  /**
   * Writes what the drawing shows to the container's data attributes, after every frame and whenever the layout or
   * the camera starts moving: `data-layout-running` and `data-camera-moving` ("true" while nodes may still move on
   * the screen), `data-focused-node` (the node focus() last went to) and `data-focused-x`/`data-focused-y` (where
   * its centre is drawn, in CSS pixels from the container's top left corner; absent while it is not drawn).
   * While a set is emphasized: `data-emphasized-count`, how many nodes of the graph are drawn emphasized (by the
   * same rule the node reducer follows), and `data-emphasized-nodes`, their ids as a sorted JSON array (up to
   * PUBLISH_EMPHASIZED_UP_TO of them).
   */
  private publishViewState(): void {
    const container = this.sigma.getContainer();
    setData(container, 'layoutRunning', String(this.layoutRestart !== null || this.layout.running));
    setData(container, 'cameraMoving', String(this.sigma.getCamera().isAnimated()));
    setData(container, 'focusedNode', this.focused ?? undefined);
    const shown = this.focused === null ? undefined : this.sigma.getNodeDisplayData(this.focused);
    const at = shown && !shown.hidden ? this.sigma.framedGraphToViewport(shown) : null;
    setData(container, 'focusedX', at?.x.toFixed(1));
    setData(container, 'focusedY', at?.y.toFixed(1));
    if (this.emphasizedView === null) this.emphasizedView = this.describeEmphasis();
    setData(container, 'emphasizedCount', this.emphasizedView.count);
    setData(container, 'emphasizedNodes', this.emphasizedView.nodes);
  }

  /** Whether node `id` is drawn emphasized: in the emphasized set or selected, and of a kind that is shown. */
  private isEmphasized(id: string, kind: string): boolean {
    const h = this.highlight;
    if (!h.emphasized || (h.hiddenKinds.size > 0 && h.hiddenKinds.has(kind))) return false;
    return h.selected === id || h.emphasized.has(id);
  }

  private describeEmphasis(): { count: string | undefined; nodes: string | undefined } {
    const set = this.highlight.emphasized;
    if (!set) return { count: undefined, nodes: undefined };
    const ids: string[] = [];
    const candidates = this.highlight.selected === null ? set : new Set([...set, this.highlight.selected]);
    for (const id of candidates) {
      if (this.graph.hasNode(id) && this.isEmphasized(id, this.graph.getNodeAttribute(id, 'kind'))) ids.push(id);
    }
    ids.sort();
    return {
      count: String(ids.length),
      nodes: ids.length <= PUBLISH_EMPHASIZED_UP_TO ? JSON.stringify(ids) : undefined,
    };
  }

  /**
   * Called for every node on every redraw of a changed graph. sigma hands the reducers a copy of the attributes,
   * so they change it in place rather than allocate another object per node.
   */
  private reduceNode(node: string, data: NodeAttributes & Partial<NodeDisplayData>): Partial<NodeDisplayData> {
    const h = this.highlight;
    if (h.hiddenKinds.size > 0 && h.hiddenKinds.has(data.kind)) {
      data.hidden = true;
    } else if (h.emphasized) {
      if (this.isEmphasized(node, data.kind)) {
        data.highlighted = h.selected === node;
        data.forceLabel = h.emphasized.size <= LABEL_EMPHASIZED_UP_TO;
        data.zIndex = h.selected === node ? 2 : 1;
      } else {
        data.color = DIMMED;
        data.label = '';
        data.zIndex = 0;
      }
    } else if (h.selected === node) {
      data.highlighted = true;
      data.zIndex = 2;
    } else if (h.selected !== null && h.neighbors.has(node)) {
      data.zIndex = 1;
    } else if (h.selected !== null) {
      data.color = DIMMED;
      data.label = '';
      data.zIndex = 0;
    }
    return data;
  }

  /** Discs for a graph of a readable size, points past DISCS_UP_TO (the node program is a sigma setting). */
  private fitNodeProgram(): void {
    const type = this.graph.order > DISCS_UP_TO ? 'point' : 'circle';
    if (this.sigma.getSetting('defaultNodeType') !== type) this.sigma.setSetting('defaultNodeType', type);
  }

  private reduceEdge(edge: string, data: EdgeAttributes & Partial<EdgeDisplayData>): Partial<EdgeDisplayData> {
    const { selected, emphasized } = this.highlight;
    if (emphasized) {
      // The emphasized subgraph: relationships with both ends in it.
      const [source, target] = this.graph.extremities(edge);
      const inside = (id: string) => id === selected || emphasized.has(id);
      if (inside(source) && inside(target)) data.size = 2;
      else data.hidden = true;
    } else if (selected === null) {
      if (this.graph.size > DRAW_ALL_EDGES_UP_TO) data.hidden = true;
    } else if (this.graph.hasExtremity(edge, selected)) {
      data.size = 2;
    } else {
      data.hidden = true;
    }
    return data;
  }
}

/** Sets (or, for undefined, removes) a data attribute, touching the DOM only when it changes. */
function setData(element: HTMLElement, key: string, value: string | undefined): void {
  if (value === undefined) delete element.dataset[key];
  else if (element.dataset[key] !== value) element.dataset[key] = value;
}
