import iterate from 'graphology-layout-forceatlas2/iterate';
import { describe, expect, it } from 'vitest';
import { GraphModel } from './GraphModel';
import { layoutSettings, toMatrices } from './ForceLayout';

function sample(n: number): GraphModel {
  const m = new GraphModel();
  m.applyPage({
    nodes: Array.from({ length: n }, (_, i) => ({ id: `n${i}`, kind: i === 0 ? 'file' : 'function', name: `n${i}` })),
    relationships: Array.from({ length: n - 1 }, (_, i) => ({
      id: `r${i}`,
      type: i % 3 === 0 ? 'calls' : 'contains',
      source: `n${Math.floor(i / 4)}`,
      target: `n${i + 1}`,
    })),
  });
  return m;
}

describe('ForceLayout matrices and settings', () => {
  it('lay every node and relationship out in the order of an index', () => {
    const m = sample(5);
    const { nodes, edges, index } = toMatrices(m.graph);
    expect(nodes.length).toBe(5 * 10);
    expect(edges.length).toBe(4 * 3);
    const i = index.get('n2')!;
    expect(nodes[i * 10]).toBeCloseTo(m.graph.getNodeAttribute('n2', 'x'), 4);
    // mass = 1 + degree
    expect(nodes[index.get('n0')! * 10 + 6]).toBe(1 + m.graph.degree('n0'));
  });

  it.each([50, 2500])('keep every position finite through iterations (%i nodes)', (n) => {
    const m = sample(n);
    const { nodes, edges } = toMatrices(m.graph);
    const before = nodes[0];
    for (let k = 0; k < 5; k++) iterate(layoutSettings(n), nodes, edges);
    for (let j = 0; j < nodes.length; j += 10) {
      expect(Number.isFinite(nodes[j]) && Number.isFinite(nodes[j + 1])).toBe(true);
    }
    expect(nodes[0]).not.toBe(before);
  });
});
