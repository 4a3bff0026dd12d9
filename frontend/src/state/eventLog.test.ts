import { describe, expect, it } from 'vitest';
import { pushEntry, toLogEntry, toneOf, type LogEntry } from './eventLog';

describe('event log', () => {
  it('colours by the kind of change', () => {
    expect(toneOf('node_added')).toBe('added');
    expect(toneOf('relationship_deleted')).toBe('deleted');
    expect(toneOf('analysis_completed')).toBe('completed');
    expect(toneOf('analysis_progress')).toBe('progress');
    expect(toneOf('node_updated')).toBe('other');
  });

  it('shows entity kind, id and a few fields', () => {
    const e = toLogEntry(
      {
        id: '1-0',
        project: 'default',
        type: 'node_added',
        entity: { kind: 'node', id: 'py:a.py:f' },
        data: { id: 'py:a.py:f', kind: 'function', name: 'f', file: 'a.py', properties: {} },
        ts: '2026-11-27T00:00:00.000Z',
      },
      0,
    );
    expect(e).toMatchObject({ entityKind: 'node', entityId: 'py:a.py:f', tone: 'added' });
    expect(e.details).toBe('kind=function name=f file=a.py');
    expect(e.at).toBe(Date.parse('2026-11-27T00:00:00.000Z'));
  });

  it('rounds fractional numbers', () => {
    const e = toLogEntry(
      {
        id: '2-0',
        project: 'default',
        type: 'analysis_progress',
        entity: { kind: 'job', id: 'j' },
        data: { job_id: 'j', percent: 16.666666, files_done: 10, total_files: 60 },
        ts: '',
      },
      5,
    );
    expect(e.details).toBe('percent=16.7 files_done=10 total_files=60');
    expect(e.at).toBe(5);
  });

  it('keeps the newest entries first, up to its capacity', () => {
    let log: LogEntry[] = [];
    for (let i = 0; i < 5; i++) {
      log = pushEntry(log, { id: `${i}-0` } as LogEntry, 3);
    }
    expect(log.map((e) => e.id)).toEqual(['4-0', '3-0', '2-0']);
  });
});
