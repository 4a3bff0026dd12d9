import { describe, expect, it } from 'vitest';
import { decodeEntry } from './envelope';

const TRACE = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };

/** A change-set frame as ws-gateway forwards it: what cg_mutate wrote, with the entry ID first. */
const SET = {
  id: '1764201600123-4',
  project: 'p',
  type: 'change_set',
  changes: [
    { type: 'node_added', entity: { kind: 'node', id: 'a' }, version: 1, data: { id: 'a', kind: 'file', name: 'a.py' } },
    { type: 'node_added', entity: { kind: 'node', id: 'b' }, version: 1, data: { id: 'b', kind: 'class', name: 'B' } },
    {
      type: 'relationship_added',
      entity: { kind: 'relationship', id: 'r' },
      version: 1,
      data: { id: 'r', type: 'defines', source: 'a', target: 'b' },
    },
  ],
  ts: '2026-11-28T18:00:00.123Z',
  trace: TRACE,
};

describe('decodeEntry', () => {
  it('reads a change set into its changes, in order, each naming the entry and its position', () => {
    const entry = decodeEntry(SET)!;
    expect(entry).toMatchObject({ id: '1764201600123-4', project: 'p', isChangeSet: true, filtered: false });
    expect(entry.changes.map((c) => [c.id, c.index, c.type, c.entity.id, c.version])).toEqual([
      ['1764201600123-4', 0, 'node_added', 'a', 1],
      ['1764201600123-4', 1, 'node_added', 'b', 1],
      ['1764201600123-4', 2, 'relationship_added', 'r', 1],
    ]);
    // What the set carries once, every change carries.
    for (const c of entry.changes) expect(c).toMatchObject({ project: 'p', ts: SET.ts, trace: TRACE });
    expect(entry.changes[2].data).toEqual({ id: 'r', type: 'defines', source: 'a', target: 'b' });
  });

  it('reads a filtered set with the positions the gateway gave, not the positions in the frame', () => {
    const filtered = {
      ...SET,
      changes: [
        { ...SET.changes[1], index: 1 },
        { ...SET.changes[2], index: 2 },
      ],
    };
    const entry = decodeEntry(filtered)!;
    expect(entry.filtered).toBe(true);
    expect(entry.changes.map((c) => [c.index, c.entity.id])).toEqual([
      [1, 'b'],
      [2, 'r'],
    ]);
  });

  it('reads a single event as an entry of one change at index 0', () => {
    const progress = {
      id: '7-0',
      project: 'p',
      type: 'analysis_progress',
      entity: { kind: 'job', id: 'j1' },
      version: 4,
      data: { job_id: 'j1', percent: 50 },
      ts: 't',
    };
    const entry = decodeEntry(progress)!;
    expect(entry).toMatchObject({ id: '7-0', isChangeSet: false, filtered: false });
    expect(entry.changes).toEqual([{ ...progress, index: 0, trace: undefined }]);
  });

  it('reads a graph change of a stream written before change sets, and graph_reset, in the single form', () => {
    const old = decodeEntry({ id: '3-1', project: 'p', type: 'node_deleted', entity: { kind: 'node', id: 'a' }, version: 2, data: {}, ts: '' })!;
    expect(old.isChangeSet).toBe(false);
    expect(old.changes.map((c) => [c.id, c.index, c.type, c.entity.id, c.version])).toEqual([['3-1', 0, 'node_deleted', 'a', 2]]);
    const reset = decodeEntry({ id: '4-0', project: 'p', type: 'graph_reset', entity: { kind: 'project', id: 'p' }, version: 0, data: { nodes: 3 }, ts: '' })!;
    expect(reset.changes.map((c) => c.type)).toEqual(['graph_reset']);
  });

  it('keeps change types it does not know, in both forms', () => {
    const set = decodeEntry({ ...SET, changes: [{ type: 'brand_new', entity: { kind: 'x', id: 'y' }, version: 0 }] })!;
    expect(set.changes[0]).toMatchObject({ type: 'brand_new', data: {} });
    expect(decodeEntry({ id: '1-0', project: 'p', type: 'brand_new', entity: { kind: 'x', id: 'y' }, ts: '' })!.changes).toHaveLength(1);
  });

  it('refuses what is not a stream entry, and a set with a malformed change whole', () => {
    for (const bad of [
      null,
      [],
      'text',
      { type: 'pong' },
      { type: 'resync_required', project: 'p', since: '1-0' },
      { ...SET, id: 'abc' },
      { ...SET, project: undefined },
      { ...SET, changes: undefined },
      { ...SET, changes: [SET.changes[0], { entity: { kind: 'node', id: 'x' } }] },
      { ...SET, changes: [{ ...SET.changes[0], index: -1 }] },
      { ...SET, changes: [{ ...SET.changes[0], index: '2' }] },
    ]) {
      expect(decodeEntry(bad), JSON.stringify(bad)).toBeNull();
    }
  });
});
