import { describe, expect, it } from 'vitest';
import type { CdcEvent } from '../events/envelope';
import { LiveCounts } from './liveCounts';

function ev(id: string, type: string, data: Record<string, unknown>): CdcEvent {
  return { id, index: 0, project: 'default', type, entity: { kind: 'node', id: String(data.id) }, data, ts: '' };
}
const stats = (last: string | null) => ({
  nodes: 10,
  relationships: 4,
  node_kinds: { file: 10 },
  relationship_types: { contains: 4 },
  last_event_id: last,
});

describe('LiveCounts', () => {
  it('starts from the stats and follows node and relationship events', () => {
    const c = new LiveCounts();
    c.setBaseline(stats('100-0'));
    c.apply(ev('101-0', 'node_added', { id: 'a', kind: 'class' }));
    c.apply(ev('102-0', 'relationship_added', { id: 'r', type: 'defines' }));
    c.apply(ev('103-0', 'node_deleted', { id: 'b', kind: 'file' }));
    c.apply(ev('104-0', 'node_updated', { id: 'a', kind: 'class' }));
    expect(c.value).toEqual({
      nodes: 10,
      relationships: 5,
      nodeKinds: { file: 9, class: 1 },
      relationshipTypes: { contains: 4, defines: 1 },
    });
  });

  it('skips events the stats already include', () => {
    const c = new LiveCounts();
    c.setBaseline(stats('100-5'));
    expect(c.apply(ev('100-5', 'node_added', { id: 'a', kind: 'file' }))).toBe(false);
    expect(c.apply(ev('99-9', 'node_added', { id: 'b', kind: 'file' }))).toBe(false);
    expect(c.value.nodes).toBe(10);
  });

  it('holds events that arrive before the stats and applies only those after them', () => {
    const c = new LiveCounts();
    c.apply(ev('99-0', 'node_added', { id: 'a', kind: 'file' }));
    c.apply(ev('101-0', 'node_added', { id: 'b', kind: 'file' }));
    expect(c.hasBaseline).toBe(false);
    c.setBaseline(stats('100-0'));
    expect(c.value.nodes).toBe(11);
  });

  it('takes every event when the stream was empty', () => {
    const c = new LiveCounts();
    c.setBaseline({ ...stats(null), nodes: 0 });
    c.apply(ev('1-0', 'node_added', { id: 'a', kind: 'file' }));
    expect(c.value.nodes).toBe(1);
  });

  it('resets on graph_reset and recounts from a snapshot', () => {
    const c = new LiveCounts();
    c.setBaseline(stats('1-0'));
    c.apply(ev('2-0', 'graph_reset', {}));
    expect(c.value.nodes).toBe(0);
    c.setFromSnapshot({
      since: '5-0',
      nodes: [{ id: 'a', kind: 'file', name: 'a' }],
      relationships: [{ id: 'r', type: 'contains', source: 'a', target: 'a' }],
    });
    expect(c.value).toEqual({ nodes: 1, relationships: 1, nodeKinds: { file: 1 }, relationshipTypes: { contains: 1 } });
    expect(c.apply(ev('4-0', 'node_added', { id: 'b', kind: 'file' }))).toBe(false);
  });

  it("counts a set's changes together: a node delete's cascade lowers both counts", () => {
    const c = new LiveCounts();
    c.setBaseline(stats('100-0'));
    const cascade = [
      { ...ev('101-0', 'relationship_deleted', { id: 'r', type: 'contains' }), index: 0 },
      { ...ev('101-0', 'relationship_deleted', { id: 's', type: 'contains' }), index: 1 },
      { ...ev('101-0', 'node_deleted', { id: 'b', kind: 'file' }), index: 2 },
    ];
    expect(c.applyChanges(cascade)).toBe(true);
    expect(c.value).toMatchObject({ nodes: 9, relationships: 2, relationshipTypes: { contains: 2 } });
    // A set at or below the stats' position is in them already: none of its changes counts.
    const old = [{ ...ev('100-0', 'node_added', { id: 'z', kind: 'file' }), index: 0 }, { ...ev('100-0', 'node_added', { id: 'y', kind: 'file' }), index: 1 }];
    expect(c.applyChanges(old)).toBe(false);
    expect(c.value.nodes).toBe(9);
  });
});
