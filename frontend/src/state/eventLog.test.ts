import { describe, expect, it } from 'vitest';
import { decodeEntry } from '../events/envelope';
import { pushEntry, toLogEntries, toLogEntry, toneOf, type LogEntry } from './eventLog';

/** The cascade of deleting node b: its relationship first, then the node, in one set. */
const CASCADE = {
  id: '1764201600123-7',
  project: 'default',
  type: 'change_set',
  changes: [
    {
      type: 'relationship_deleted',
      entity: { kind: 'relationship', id: 'r' },
      version: 2,
      data: { id: 'r', type: 'calls', source: 'a', target: 'b' },
    },
    { type: 'node_deleted', entity: { kind: 'node', id: 'b' }, version: 2, data: { id: 'b', kind: 'function', name: 'beta' } },
  ],
  ts: '2026-11-27T00:00:00.000Z',
};

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
        index: 0,
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
        index: 0,
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

  it('gives a change set one line per change, each naming its entry and its position', () => {
    const lines = toLogEntries(decodeEntry(CASCADE)!, 0);
    expect(lines.map((l) => [l.type, l.entryId, l.index, l.position, l.key])).toEqual([
      ['relationship_deleted', CASCADE.id, 0, `${CASCADE.id} #0`, `${CASCADE.id}#0`],
      ['node_deleted', CASCADE.id, 1, `${CASCADE.id} #1`, `${CASCADE.id}#1`],
    ]);
    expect(lines[1].details).toBe('kind=function name=beta');
  });

  it('names a filtered change by its position in the entry, not in the frame', () => {
    const filtered = { ...CASCADE, changes: [{ ...CASCADE.changes[1], index: 1 }] };
    const [line] = toLogEntries(decodeEntry(filtered)!, 0);
    expect([line.type, line.index, line.position]).toEqual(['node_deleted', 1, `${CASCADE.id} #1`]);
  });

  it('names a single event by its entry alone', () => {
    const single = { id: '9-0', project: 'default', type: 'analysis_cancelled', entity: { kind: 'job', id: 'j' }, data: { job_id: 'j' }, ts: '' };
    const [line] = toLogEntries(decodeEntry(single)!, 0);
    expect([line.inSet, line.position, line.key]).toEqual([false, '9-0', '9-0#0']);
  });

  it('turns only the last changes of a large set into lines', () => {
    const changes = Array.from({ length: 250 }, (_, i) => ({
      type: 'node_added',
      entity: { kind: 'node', id: `n${i}` },
      version: 1,
      data: { id: `n${i}`, kind: 'function', name: `f${i}` },
    }));
    const lines = toLogEntries(decodeEntry({ ...CASCADE, changes })!, 0, 100);
    expect(lines).toHaveLength(100);
    expect([lines[0].index, lines[99].index]).toEqual([150, 249]);
  });

  it('keeps the newest entries first, up to its capacity', () => {
    let log: LogEntry[] = [];
    for (let i = 0; i < 5; i++) {
      log = pushEntry(log, { key: `${i}-0#0` } as LogEntry, 3);
    }
    expect(log.map((e) => e.key)).toEqual(['4-0#0', '3-0#0', '2-0#0']);
  });
});
