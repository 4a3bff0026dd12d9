/**
 * Node and relationship counts, read once from `GET /api/graph/stats` and then kept current by events.
 *
 * The stats and the event stream race: events may arrive before the stats answer, and the stats may already
 * include events that are still on their way. The stats carry `last_event_id`, the stream position they are
 * consistent with, so events at or below it are already counted and events above it are applied; events that
 * arrive before the stats are held back until then.
 */
import type { GraphStats, Snapshot } from '../api/types';
import type { CdcEvent } from '../events/envelope';
import { compareStreamIds, type StreamId } from '../events/streamId';

export interface Counts {
  nodes: number;
  relationships: number;
  nodeKinds: Record<string, number>;
  relationshipTypes: Record<string, number>;
}

/**
 * Changes held back while no baseline is known. Past this the oldest are dropped: they are the ones most likely
 * to be included in the stats that have not answered yet.
 */
const MAX_HELD_BACK = 50_000;

export function emptyCounts(): Counts {
  return { nodes: 0, relationships: 0, nodeKinds: {}, relationshipTypes: {} };
}

function bump(table: Record<string, number>, key: unknown, by: number): void {
  const k = typeof key === 'string' && key !== '' ? key : 'unknown';
  const next = (table[k] ?? 0) + by;
  if (next <= 0) delete table[k];
  else table[k] = next;
}

export class LiveCounts {
  private counts: Counts = emptyCounts();
  /** undefined until a baseline is set; null when the baseline's stream was empty. */
  private baselineId: StreamId | null | undefined = undefined;
  private heldBack: CdcEvent[] = [];

  get hasBaseline(): boolean {
    return this.baselineId !== undefined;
  }

  get value(): Counts {
    return this.counts;
  }

  setBaseline(stats: GraphStats): void {
    this.counts = {
      nodes: stats.nodes,
      relationships: stats.relationships,
      nodeKinds: { ...stats.node_kinds },
      relationshipTypes: { ...stats.relationship_types },
    };
    this.baselineId = stats.last_event_id ?? null;
    const held = this.heldBack;
    this.heldBack = [];
    for (const e of held) this.apply(e);
  }

  /** Replaces everything with a snapshot's contents (after a resync). */
  setFromSnapshot(snapshot: Snapshot): void {
    const counts = emptyCounts();
    for (const n of snapshot.nodes) bump(counts.nodeKinds, n.kind, 1);
    for (const r of snapshot.relationships) bump(counts.relationshipTypes, r.type, 1);
    counts.nodes = snapshot.nodes.length;
    counts.relationships = snapshot.relationships.length;
    this.counts = counts;
    this.baselineId = snapshot.since;
    this.heldBack = [];
  }

  /** Applies the changes of one stream entry; returns whether the counts changed. */
  applyChanges(changes: readonly CdcEvent[]): boolean {
    let changed = false;
    for (const change of changes) if (this.apply(change)) changed = true;
    return changed;
  }

  /**
   * Applies one change; returns whether the counts changed. The baseline is compared with the change's entry ID,
   * so the changes of one set are all counted or all skipped.
   */
  apply(event: CdcEvent): boolean {
    if (this.baselineId === undefined) {
      this.heldBack.push(event);
      if (this.heldBack.length > MAX_HELD_BACK) this.heldBack.shift();
      return false;
    }
    if (this.baselineId !== null && compareStreamIds(event.id, this.baselineId) <= 0) return false;
    const data = event.data as { kind?: unknown; type?: unknown };
    const c = this.counts;
    switch (event.type) {
      case 'node_added':
      case 'node_deleted': {
        const by = event.type === 'node_added' ? 1 : -1;
        c.nodes = Math.max(0, c.nodes + by);
        bump(c.nodeKinds, data.kind, by);
        return true;
      }
      case 'relationship_added':
      case 'relationship_deleted': {
        const by = event.type === 'relationship_added' ? 1 : -1;
        c.relationships = Math.max(0, c.relationships + by);
        bump(c.relationshipTypes, data.type, by);
        return true;
      }
      case 'graph_reset':
        this.counts = emptyCounts();
        return true;
      default:
        return false;
    }
  }
}
