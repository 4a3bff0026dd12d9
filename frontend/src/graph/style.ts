/** How kinds of nodes and types of relationships look, in the graph and in the legends. */

export const NODE_COLORS: Record<string, string> = {
  directory: '#64748b',
  file: '#3b82f6',
  module: '#8b5cf6',
  class: '#f59e0b',
  function: '#10b981',
  method: '#06b6d4',
};
export const UNKNOWN_NODE_COLOR = '#a3a3a3';

export const NODE_SIZES: Record<string, number> = {
  directory: 7,
  file: 5,
  module: 5,
  class: 4,
  function: 3,
  method: 2.5,
};

export const RELATIONSHIP_COLORS: Record<string, string> = {
  contains: '#cbd5e1',
  defines: '#d6d3d1',
  imports: '#93c5fd',
  calls: '#86efac',
  inherits: '#fca5a5',
  implements: '#f9a8d4',
};
export const UNKNOWN_RELATIONSHIP_COLOR = '#e5e7eb';

export function nodeColor(kind: string): string {
  return NODE_COLORS[kind] ?? UNKNOWN_NODE_COLOR;
}

export function nodeSize(kind: string): number {
  return NODE_SIZES[kind] ?? 3;
}

export function relationshipColor(type: string): string {
  return RELATIONSHIP_COLORS[type] ?? UNKNOWN_RELATIONSHIP_COLOR;
}
