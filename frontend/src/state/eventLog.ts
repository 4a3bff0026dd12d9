/**
 * The event log's model: the last changes, one line each, each reduced to what its line shows. A change set gives
 * one line per change; every line names the stream entry it came in and, for a set, its position in it.
 */
import type { CdcEvent, StreamEntry } from '../events/envelope';

export type EventTone = 'added' | 'deleted' | 'completed' | 'progress' | 'failed' | 'other';

export interface LogEntry {
  /** Unique per line: the entry ID and the change's index. */
  key: string;
  entryId: string;
  /** Position in the entry's change set; 0 for a single event. */
  index: number;
  /** The change came in a change set (its index is worth showing). */
  inSet: boolean;
  /** Where the change is in the stream: `<entry id>` for a single event, `<entry id> #<index>` in a set. */
  position: string;
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

/** One line for one change; `inSet` when it came in a change set. */
export function toLogEntry(event: CdcEvent, receivedAt: number, inSet = false): LogEntry {
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
    key: `${event.id}#${event.index}`,
    entryId: event.id,
    index: event.index,
    inSet,
    position: inSet ? `${event.id} #${event.index}` : event.id,
    type: event.type,
    tone: toneOf(event.type),
    at: Number.isFinite(ts) ? ts : receivedAt,
    entityKind,
    entityId: event.entity?.id ?? '',
    details,
  };
}

/**
 * The lines of one stream entry, in entry order. Only the last `limit` changes are turned into lines: a set of
 * thousands would push all but those out of the log anyway.
 */
export function toLogEntries(entry: StreamEntry, receivedAt: number, limit = LOG_CAPACITY): LogEntry[] {
  return entry.changes.slice(Math.max(0, entry.changes.length - limit)).map((c) => toLogEntry(c, receivedAt, entry.isChangeSet));
}

/** Newest first, at most `capacity` entries. */
export function pushEntry(log: LogEntry[], entry: LogEntry, capacity = LOG_CAPACITY): LogEntry[] {
  const next = [entry, ...log];
  if (next.length > capacity) next.length = capacity;
  return next;
}
