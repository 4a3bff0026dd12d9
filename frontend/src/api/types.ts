/** The shapes graph-api returns (see its OpenAPI document); the dashboard reads only these fields. */

export const NODE_KINDS = ['directory', 'file', 'module', 'class', 'function', 'method'] as const;
export const RELATIONSHIP_TYPES = ['contains', 'defines', 'imports', 'calls', 'inherits', 'implements'] as const;

export type NodeKind = (typeof NODE_KINDS)[number];
export type RelationshipType = (typeof RELATIONSHIP_TYPES)[number];

export interface GraphNode {
  id: string;
  /** One of NODE_KINDS; other kinds are shown as they come. */
  kind: string;
  name: string;
  file?: string;
  line_start?: number;
  line_end?: number;
  properties?: Record<string, unknown>;
  version?: number;
}

export interface GraphRelationship {
  id: string;
  type: string;
  source: string;
  target: string;
  properties?: Record<string, unknown>;
  version?: number;
}

export interface GraphStats {
  nodes: number;
  relationships: number;
  node_kinds: Record<string, number>;
  relationship_types: Record<string, number>;
  last_event_id: string | null;
}

export interface GraphPage {
  nodes: GraphNode[];
  relationships: GraphRelationship[];
  next_cursor: string | null;
}

export interface SnapshotPage extends GraphPage {
  /** The stream ID this snapshot is consistent with: resume the event stream from here. */
  since: string;
}

/** A whole snapshot, all pages loaded. */
export interface Snapshot {
  since: string;
  nodes: GraphNode[];
  relationships: GraphRelationship[];
}

export interface Neighborhood {
  nodes: GraphNode[];
  relationships: GraphRelationship[];
}

export type AnalysisMode = 'full' | 'incremental';

export interface ApiErrorBody {
  error: { code: string; message: string };
}

/**
 * Code intelligence (`GET /api/graph/callers|callees|impact`): what the analysis resolved about one symbol. The
 * raw answers are read by `state/nodeIntel.ts` into IntelSection, the one shape the panel draws.
 */
export type IntelQuery = 'callers' | 'callees' | 'impact';
