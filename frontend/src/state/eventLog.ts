/** The event log's model: the last events, each reduced to what one line of the log shows. */
import type { CdcEvent } from '../events/envelope';

export type EventTone = 'added' | 'deleted' | 'completed' | 'progress' | 'failed' | 'other';

export interface LogEntry {
  id: string;
  type: string;
  tone: EventTone;
  /** Epoch ms of the event (its `ts`), for the relative time. */
  at: number;
  entityKind: string;
  entityId: string;
  /** A few fields, already formatted. */
  details: string;
}

export const LOG_CAPACITY = 100;

export function toneOf(type: string): EventTone {
  if (type.endsWith('_added')) return 'added';
  if (type.endsWith('_deleted')) return 'deleted';
  if (type.endsWith('_completed')) return 'completed';
  if (type.endsWith('_progress')) return 'progress';
  if (type.endsWith('_failed')) return 'failed';
  return 'other';
}

function field(data: Record<string, unknown>, key: string): string | null {
  const v = data[key];
  if (v === undefined || v === null || v === '') return null;
  if (typeof v === 'number') return `${key}=${Number.isInteger(v) ? v : v.toFixed(1)}`;
  return `${key}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`;
}

const DETAIL_FIELDS: Record<string, string[]> = {
  node: ['kind', 'name', 'file', 'line_start'],
  relationship: ['type', 'source', 'target'],
  job: ['percent', 'files_done', 'total_files', 'current_file', 'phase', 'nodes', 'relationships', 'error', 'path'],
};

export function toLogEntry(event: CdcEvent, receivedAt: number): LogEntry {
  const data = (event.data ?? {}) as Record<string, unknown>;
  const entityKind = event.entity?.kind ?? '';
  const keys = DETAIL_FIELDS[entityKind] ?? Object.keys(data).slice(0, 3);
  const details = keys
    .map((k) => field(data, k))
    .filter((s): s is string => s !== null)
    .slice(0, 4)
    .join(' ');
  const ts = Date.parse(event.ts);
  return {
    id: event.id,
    type: event.type,
    tone: toneOf(event.type),
    at: Number.isFinite(ts) ? ts : receivedAt,
    entityKind,
    entityId: event.entity?.id ?? '',
    details,
  };
}

/** Newest first, at most `capacity` entries. */
export function pushEntry(log: LogEntry[], entry: LogEntry, capacity = LOG_CAPACITY): LogEntry[] {
  const next = [entry, ...log];
  if (next.length > capacity) next.length = capacity;
  return next;
}
