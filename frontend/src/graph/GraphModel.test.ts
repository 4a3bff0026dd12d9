import { describe, expect, it } from 'vitest';
import type { GraphNode, GraphRelationship } from '../api/types';
import { decodeEntry, type CdcEvent } from '../events/envelope';
import { GraphModel } from './GraphModel';

const node = (id: string, kind = 'function', version = 1): GraphNode => ({ id, kind, name: id, version });
const rel = (id: string, source: string, target: string, type = 'contains', version = 1): GraphRelationship => ({
  id,
  type,
  source,
  target,
  version,
});

function ev(type: string, data: GraphNode | GraphRelationship, version = 1): CdcEvent {
  const kind = type.startsWith('node_') ? 'node' : 'relationship';
  return {
    id: '1-0',
    index: 0,
    project: 'default',
    type,
    entity: { kind, id: data.id },
    version,
    data: data as unknown as Record<string, unknown>,
    ts: '',
  };
}

describe('GraphModel', () => {
  it('loads pages, attaching relationships whose target comes in a later page', () => {
    const m = new GraphModel();
    m.applyPage({ nodes: [node('a', 'file')], relationships: [rel('r1', 'a', 'b')] });
    expect(m.relationshipCount).toBe(0);
    expect(m.waitingCount).toBe(1);
    m.applyPage({ nodes: [node('b')], relationships: [] });
    expect(m.nodeCount).toBe(2);
    expect(m.relationshipCount).toBe(1);
    expect(m.waitingCount).toBe(0);
    expect(m.graph.getEdgeAttribute('r1', 'relType')).toBe('contains');
  });

  it('grows and shrinks with events, and applying an event twice changes nothing', () => {
    const m = new GraphModel();
    const add = ev('node_added', node('a'));
    expect(m.applyEvent(add)).toBe(true);
    m.applyEvent(add);
    m.applyEvent(ev('node_added', node('b')));
    m.applyEvent(ev('relationship_added', rel('r', 'a', 'b', 'calls')));
    expect([m.nodeCount, m.relationshipCount]).toEqual([2, 1]);
    const del = ev('node_deleted', node('b'), 2);
    expect(m.applyEvent(del)).toBe(true);
    expect(m.applyEvent(del)).toBe(false);
    expect([m.nodeCount, m.relationshipCount]).toEqual([1, 0]);
  });

  it('does not let an older page bring back a deleted node', () => {
    const m = new GraphModel();
    m.applyPage({ nodes: [node('a', 'class', 1)], relationships: [] });
    m.applyEvent(ev('node_deleted', node('a', 'class', 1), 2));
    m.applyPage({ nodes: [node('a', 'class', 1)], relationships: [] });
    expect(m.nodeCount).toBe(0);
    m.applyEvent(ev('node_added', node('a', 'class', 3), 3));
    expect(m.nodeCount).toBe(1);
  });

  it('ignores updates older than what it has', () => {
    const m = new GraphModel();
    m.applyEvent(ev('node_updated', { ...node('a'), name: 'new' }, 5));
    m.applyPage({ nodes: [{ ...node('a', 'function', 4), name: 'old' }], relationships: [] });
    expect(m.graph.getNodeAttribute('a', 'label')).toBe('new');
  });

  it('colours and sizes nodes by kind and places children next to their parent', () => {
    const m = new GraphModel();
    m.applyPage({ nodes: [node('dir', 'directory'), node('f', 'file')], relationships: [rel('c', 'dir', 'f')] });
    const dir = m.graph.getNodeAttributes('dir');
    const f = m.graph.getNodeAttributes('f');
    expect(dir.color).not.toBe(f.color);
    expect(dir.size).toBeGreaterThan(f.size);
    expect(Math.hypot(dir.x - f.x, dir.y - f.y)).toBeLessThanOrEqual(5);
  });

  it('clears on graph_reset and replaces on a snapshot', () => {
    const m = new GraphModel();
    m.applyPage({ nodes: [node('a'), node('b')], relationships: [rel('r', 'a', 'b')] });
    m.applyEvent({ ...ev('node_added', node('x')), type: 'graph_reset' });
    expect(m.nodeCount).toBe(0);
    m.replace({ since: '9-0', nodes: [node('z')], relationships: [] });
    expect(m.graph.nodes()).toEqual(['z']);
  });

  describe('change sets', () => {
    /** The changes of a change-set frame, decoded as the page decodes it. */
    function set(id: string, ...changes: Array<[string, GraphNode | GraphRelationship, number?]>): CdcEvent[] {
      const frame = {
        id,
        project: 'default',
        type: 'change_set',
        changes: changes.map(([type, data, version = 1]) => ({
          type,
          entity: { kind: type.startsWith('node_') ? 'node' : 'relationship', id: data.id },
          version,
          data,
        })),
        ts: '',
      };
      return decodeEntry(frame)!.changes;
    }

    it('applies a set whole: nodes and the relationships between them, whatever their order in it', () => {
      const m = new GraphModel();
      const changed = m.applyChangeSet(
        set('5-0', ['relationship_added', rel('r', 'f', 'g', 'calls')], ['node_added', node('f')], ['node_added', node('g')]),
      );
      expect(changed).toBe(true);
      expect([m.nodeCount, m.relationshipCount, m.waitingCount]).toEqual([2, 1, 0]);
      expect(m.graph.source('r')).toBe('f');
    });

    it("applies a node delete's cascade (its relationships first, then the node) as one set", () => {
      const m = new GraphModel();
      m.applyChangeSet(
        set('1-0', ['node_added', node('a')], ['node_added', node('b')], ['node_added', node('c')], ['relationship_added', rel('ab', 'a', 'b')], ['relationship_added', rel('bc', 'b', 'c')]),
      );
      expect([m.nodeCount, m.relationshipCount]).toEqual([3, 2]);
      const cascade = set('2-0', ['relationship_deleted', rel('ab', 'a', 'b'), 2], ['relationship_deleted', rel('bc', 'b', 'c'), 2], ['node_deleted', node('b'), 2]);
      expect(m.applyChangeSet(cascade)).toBe(true);
      expect([m.nodeCount, m.relationshipCount]).toEqual([2, 0]);
      // Applied twice (a replay), it changes nothing, and an older page cannot bring the deleted back.
      expect(m.applyChangeSet(cascade)).toBe(false);
      m.applyPage({ nodes: [node('b')], relationships: [rel('ab', 'a', 'b')] });
      expect([m.nodeCount, m.relationshipCount]).toEqual([2, 0]);
    });

    it('says a set changed nothing when it holds only changes it does not draw', () => {
      const m = new GraphModel();
      const job = { ...ev('node_added', node('x')), type: 'analysis_progress', entity: { kind: 'job', id: 'j' } };
      expect(m.applyChangeSet([job])).toBe(false);
      expect(m.nodeCount).toBe(0);
    });
  });
});
