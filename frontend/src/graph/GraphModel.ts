/**
 * The client's copy of (part of) a project's graph, as a graphology graph that sigma renders.
 *
 * Pages from `GET /api/graph/subgraph` and live events arrive in any interleaving, and an event may be applied
 * twice, so every change is decided by version (docs/DESIGN.md, invariant 3): an upsert older than what is here is
 * ignored, and a delete leaves a tombstone so that a page read before the delete cannot bring the entity back.
 * A relationship whose endpoint is not loaded yet waits until that node arrives.
 */
import Graph from 'graphology';
import type { GraphNode, GraphPage, GraphRelationship, Snapshot } from '../api/types';
import type { CdcEvent } from '../events/envelope';
import { nodeColor, nodeSize, relationshipColor } from './style';

export interface NodeAttributes {
  x: number;
  y: number;
  size: number;
  color: string;
  label: string;
  kind: string;
  file?: string;
  lineStart?: number;
  lineEnd?: number;
  version?: number;
}

export interface EdgeAttributes {
  /** The relationship type (not `type`, which sigma reads as the name of an edge program). */
  relType: string;
  size: number;
  color: string;
  version?: number;
}

export type CodeGraph = Graph<NodeAttributes, EdgeAttributes>;

interface Waiting {
  relationship: GraphRelationship;
  version?: number;
}

const MAX_TOMBSTONES = 100_000;
const MAX_WAITING = 200_000;
/** Relationships along which a new child is placed next to its parent. */
const HIERARCHY = new Set(['contains', 'defines']);

function tombstone(map: Map<string, number>, id: string, version: number | undefined): void {
  map.delete(id);
  map.set(id, version ?? 0);
  if (map.size > MAX_TOMBSTONES) map.delete(map.keys().next().value as string);
}

/** Whether an incoming version may replace the current one (equal versions re-apply the same state). */
function supersedes(incoming: number | undefined, current: number | undefined): boolean {
  return incoming === undefined || current === undefined || incoming >= current;
}

/** A stable pseudo-random number in [0, 1) from a string, so the first layout is the same on every load. */
export function hashUnit(s: string, salt = 0): number {
  let h = 2166136261 ^ salt;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return ((h >>> 0) % 1_000_003) / 1_000_003;
}

export class GraphModel {
  readonly graph: CodeGraph = new Graph<NodeAttributes, EdgeAttributes>({
    multi: true,
    type: 'directed',
    allowSelfLoops: true,
  });
  private readonly deletedNodes = new Map<string, number>();
  private readonly deletedRelationships = new Map<string, number>();
  private readonly waiting = new Map<string, Waiting>();
  private readonly waitingByNode = new Map<string, Set<string>>();

  get nodeCount(): number {
    return this.graph.order;
  }

  get relationshipCount(): number {
    return this.graph.size;
  }

  applyPage(page: Pick<GraphPage, 'nodes' | 'relationships'>): void {
    for (const n of page.nodes) this.upsertNode(n, n.version);
    for (const r of page.relationships) this.upsertRelationship(r, r.version);
  }

  /** Replaces everything with a snapshot (after a resync). */
  replace(snapshot: Snapshot): void {
    this.clear();
    this.applyPage(snapshot);
  }

  clear(): void {
    this.graph.clear();
    this.deletedNodes.clear();
    this.deletedRelationships.clear();
    this.waiting.clear();
    this.waitingByNode.clear();
  }

  /**
   * Applies the changes of one stream entry (a change set, or a single event), in entry order, as one step of the
   * graph; returns whether the graph changed. A deleted node's relationships come before it in its set (so each is
   * dropped and tombstoned by its own change), and a relationship whose node comes later in the set waits for it.
   */
  applyChangeSet(changes: readonly CdcEvent[]): boolean {
    let changed = false;
    for (const change of changes) if (this.applyEvent(change)) changed = true;
    return changed;
  }

  /** Applies one change; returns whether the graph changed. Other event types are ignored. */
  applyEvent(event: CdcEvent): boolean {
    switch (event.type) {
      case 'node_added':
      case 'node_updated':
        return this.upsertNode(event.data as unknown as GraphNode, event.version);
      case 'node_deleted':
        return this.removeNode(event.entity?.id ?? (event.data as { id?: string }).id ?? '', event.version);
      case 'relationship_added':
      case 'relationship_updated':
        return this.upsertRelationship(event.data as unknown as GraphRelationship, event.version);
      case 'relationship_deleted':
        return this.removeRelationship(
          event.entity?.id ?? (event.data as { id?: string }).id ?? '',
          event.version,
        );
      case 'graph_reset':
        this.clear();
        return true;
      default:
        return false;
    }
  }

  upsertNode(node: GraphNode, version?: number): boolean {
    if (!node || typeof node.id !== 'string') return false;
    const dead = this.deletedNodes.get(node.id);
    if (dead !== undefined && version !== undefined && version <= dead) return false;
    const attrs = {
      label: node.name ?? node.id,
      kind: node.kind ?? 'unknown',
      color: nodeColor(node.kind),
      size: nodeSize(node.kind),
      file: node.file,
      lineStart: node.line_start,
      lineEnd: node.line_end,
      version,
    };
    if (this.graph.hasNode(node.id)) {
      if (!supersedes(version, this.graph.getNodeAttribute(node.id, 'version'))) return false;
      this.graph.mergeNodeAttributes(node.id, attrs);
    } else {
      this.deletedNodes.delete(node.id);
      this.graph.addNode(node.id, { ...attrs, ...this.initialPosition(node.id) });
      this.attachWaiting(node.id);
    }
    return true;
  }

  removeNode(id: string, version?: number): boolean {
    const present = this.graph.hasNode(id);
    if (present && !supersedes(version, this.graph.getNodeAttribute(id, 'version'))) return false;
    tombstone(this.deletedNodes, id, version);
    if (present) this.graph.dropNode(id);
    return present;
  }

  upsertRelationship(rel: GraphRelationship, version?: number): boolean {
    if (!rel || typeof rel.id !== 'string') return false;
    const dead = this.deletedRelationships.get(rel.id);
    if (dead !== undefined && version !== undefined && version <= dead) return false;
    const attrs = { relType: rel.type, color: relationshipColor(rel.type), size: 1, version };
    if (this.graph.hasEdge(rel.id)) {
      if (!supersedes(version, this.graph.getEdgeAttribute(rel.id, 'version'))) return false;
      this.graph.mergeEdgeAttributes(rel.id, attrs);
      return true;
    }
    this.deletedRelationships.delete(rel.id);
    if (!this.graph.hasNode(rel.source) || !this.graph.hasNode(rel.target)) {
      this.wait(rel, version);
      return false;
    }
    this.unwait(rel.id);
    this.placeChild(rel);
    this.graph.addDirectedEdgeWithKey(rel.id, rel.source, rel.target, attrs);
    return true;
  }

  removeRelationship(id: string, version?: number): boolean {
    const present = this.graph.hasEdge(id);
    if (present && !supersedes(version, this.graph.getEdgeAttribute(id, 'version'))) return false;
    tombstone(this.deletedRelationships, id, version);
    this.unwait(id);
    if (present) this.graph.dropEdge(id);
    return present;
  }

  /** Relationships waiting for an endpoint (for tests and diagnostics). */
  get waitingCount(): number {
    return this.waiting.size;
  }

  private initialPosition(id: string): { x: number; y: number } {
    // A disc that grows with the graph, so a large graph does not start as one dense blob.
    const radius = 10 * Math.sqrt(this.graph.order + 1);
    const angle = 2 * Math.PI * hashUnit(id, 1);
    const r = radius * Math.sqrt(hashUnit(id, 2));
    return { x: r * Math.cos(angle), y: r * Math.sin(angle) };
  }

  /** A node that has no relationship yet is moved next to its parent, where the layout would take it anyway. */
  private placeChild(rel: GraphRelationship): void {
    if (!HIERARCHY.has(rel.type) || rel.source === rel.target) return;
    if (this.graph.degree(rel.target) !== 0) return;
    const parent = this.graph.getNodeAttributes(rel.source);
    const angle = 2 * Math.PI * hashUnit(rel.target, 3);
    const distance = 2 + 3 * hashUnit(rel.target, 4);
    this.graph.mergeNodeAttributes(rel.target, {
      x: parent.x + distance * Math.cos(angle),
      y: parent.y + distance * Math.sin(angle),
    });
  }

  private wait(rel: GraphRelationship, version?: number): void {
    if (this.waiting.size >= MAX_WAITING && !this.waiting.has(rel.id)) return;
    this.waiting.set(rel.id, { relationship: rel, version });
    for (const end of [rel.source, rel.target]) {
      if (this.graph.hasNode(end)) continue;
      let set = this.waitingByNode.get(end);
      if (!set) this.waitingByNode.set(end, (set = new Set()));
      set.add(rel.id);
    }
  }

  private unwait(relId: string): void {
    const w = this.waiting.get(relId);
    if (!w) return;
    this.waiting.delete(relId);
    for (const end of [w.relationship.source, w.relationship.target]) {
      const set = this.waitingByNode.get(end);
      set?.delete(relId);
      if (set && set.size === 0) this.waitingByNode.delete(end);
    }
  }

  private attachWaiting(nodeId: string): void {
    const ids = this.waitingByNode.get(nodeId);
    if (!ids) return;
    this.waitingByNode.delete(nodeId);
    for (const relId of ids) {
      const w = this.waiting.get(relId);
      if (!w) continue;
      const { source, target } = w.relationship;
      if (this.graph.hasNode(source) && this.graph.hasNode(target)) {
        this.upsertRelationship(w.relationship, w.version);
      }
    }
  }
}
