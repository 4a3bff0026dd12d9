/**
 * The CDC envelope (docs/DESIGN.md, "The event envelope"): the same JSON on the stream, on Pub/Sub and on the
 * WebSocket, plus the control messages ws-gateway sends on the same socket.
 *
 * Every frame is one stream entry, in one of two forms:
 * - a change set (`"type":"change_set"`): everything one graph mutation changed, as an ordered list of changes, with
 *   the project, time and trace once; a subscription that filters some changes out gets only the matching ones, each
 *   with its position in the entry (`index`);
 * - a single event (`analysis_*`, `graph_reset`, and the graph changes of streams written before change sets).
 * decodeEntry reads both into the same shape, so nothing past it knows which form came.
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

/**
 * One change: a single event, or one change of a change set with what the set carries once copied in. A change is
 * named by its entry (`id`) and its position in it (`index`).
 */
export interface CdcEvent<D = Record<string, unknown>> {
  /** The stream entry it came in: the resume point and the key of de-duplication. */
  id: StreamId;
  /** Its position in the entry's change set; 0 for a single event. */
  index: number;
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

/** The `type` of a change-set frame. */
export const CHANGE_SET_TYPE = 'change_set';

/** One stream entry, as every consumer of frames sees it. */
export interface StreamEntry {
  id: StreamId;
  project: string;
  ts: string;
  /** A `change_set` frame; false for a single event. */
  isChangeSet: boolean;
  /** The subscription filtered some changes out: `changes` are the matching ones, with their positions in the entry. */
  filtered: boolean;
  /** In entry order; a single event is a list of one. */
  changes: CdcEvent[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/** The fields of a change (a single event, or one element of `changes`), or null when it is not one. */
function changeFields(value: unknown): Pick<CdcEvent, 'type' | 'entity' | 'version' | 'data'> | null {
  if (!isObject(value) || typeof value.type !== 'string') return null;
  const entity = isObject(value.entity) ? value.entity : {};
  return {
    type: value.type,
    entity: { kind: String(entity.kind ?? ''), id: String(entity.id ?? '') },
    version: typeof value.version === 'number' ? value.version : undefined,
    data: isObject(value.data) ? value.data : {},
  };
}

/**
 * Reads one frame (parsed JSON) into its stream entry, in either form; null for anything that is not a stream
 * entry (control messages, malformed frames). A change set with a malformed change is refused whole: applying the
 * rest would break the set's atomicity.
 */
export function decodeEntry(frame: unknown): StreamEntry | null {
  if (!isObject(frame) || !isStreamId(frame.id) || typeof frame.project !== 'string') return null;
  if (typeof frame.type !== 'string') return null;
  const id = frame.id;
  const project = frame.project;
  const ts = typeof frame.ts === 'string' ? frame.ts : '';
  const trace = isObject(frame.trace) ? (frame.trace as CdcEvent['trace']) : undefined;
  if (frame.type !== CHANGE_SET_TYPE) {
    const fields = changeFields(frame);
    if (fields === null) return null;
    return { id, project, ts, isChangeSet: false, filtered: false, changes: [{ id, index: 0, project, ...fields, ts, trace }] };
  }
  if (!Array.isArray(frame.changes)) return null;
  const changes: CdcEvent[] = [];
  let filtered = false;
  for (const [position, raw] of frame.changes.entries()) {
    const fields = changeFields(raw);
    if (fields === null) return null;
    const given = (raw as Record<string, unknown>).index;
    let index = position;
    if (given !== undefined) {
      if (!isIndex(given)) return null;
      index = given;
      filtered = true;
    }
    changes.push({ id, index, project, ...fields, ts, trace });
  }
  return { id, project, ts, isChangeSet: true, filtered, changes };
}
