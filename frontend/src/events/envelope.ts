/**
 * The CDC event envelope (docs/DESIGN.md, "The event envelope"): the same JSON on the stream, on Pub/Sub and on the
 * WebSocket, plus the control messages ws-gateway sends on the same socket.
 */
import type { GraphNode, GraphRelationship } from '../api/types';
import { isStreamId, type StreamId } from './streamId';

/** The events that change the graph itself. */
export const GRAPH_EVENT_TYPES = [
  'node_added',
  'node_updated',
  'node_deleted',
  'relationship_added',
  'relationship_updated',
  'relationship_deleted',
  'graph_reset',
] as const;

export const EVENT_TYPES = [
  ...GRAPH_EVENT_TYPES,
  'analysis_started',
  'analysis_progress',
  'analysis_completed',
  'analysis_failed',
  'analysis_cancelled',
] as const;

export type KnownEventType = (typeof EVENT_TYPES)[number];

export interface CdcEvent<D = Record<string, unknown>> {
  id: StreamId;
  project: string;
  /** A KnownEventType, or a newer type this dashboard does not know (kept in the log, otherwise ignored). */
  type: string;
  entity: { kind: string; id: string };
  version?: number;
  data: D;
  ts: string;
  trace?: { traceparent?: string };
}

export type NodeEvent = CdcEvent<GraphNode>;
export type RelationshipEvent = CdcEvent<GraphRelationship>;

export interface AnalysisStartedData {
  job_id: string;
  total_files: number;
  /** A list of languages, or the number of files per language. */
  languages: string[] | Record<string, number>;
  path: string;
  mode: string;
}
export interface AnalysisProgressData {
  job_id: string;
  files_done: number;
  total_files: number;
  current_file: string;
  phase: string;
  percent: number;
}
export interface AnalysisCompletedData {
  job_id: string;
  nodes: number;
  relationships: number;
  files: number;
  skipped: number;
  errors: number;
  duration_ms: number;
}
export interface AnalysisFailedData {
  job_id: string;
  error: string;
}
export interface AnalysisCancelledData {
  job_id: string;
}

/** Control messages on the socket that are not stream events. */
export type ControlMessage =
  | { type: 'pong' }
  | { type: 'resync_required'; reason?: string; [k: string]: unknown }
  | { type: 'error'; code: string; message: string };

export function isCdcEvent(value: unknown): value is CdcEvent {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return isStreamId(v.id) && typeof v.type === 'string' && typeof v.project === 'string';
}
