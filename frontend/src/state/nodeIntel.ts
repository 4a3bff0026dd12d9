/**
 * What the node details panel knows about the selected symbol: its callers, its callees and its impact set (from
 * graph-api's `callers`, `callees` and `impact` routes), kept fresh by the change sets the page already receives.
 *
 * Free of Vue, so it is unit-tested with a fake source and fake timers. NodeIntel loads the three answers in
 * parallel, each section on its own (one slow or failing query does not hide the others), and drops answers that
 * arrive for a selection that has moved on. A change set that mentions the symbol or any node of its answers (an
 * entity id, or either end of a relationship) makes it ask again, coalesced: one refresh in flight at a time, at
 * most one every REFRESH_GAP_MS while an analysis streams thousands of changes. Nothing is polled.
 */
import { ApiError } from '../api/GraphApi';
import type { GraphNode, IntelQuery } from '../api/types';
import type { CdcEvent } from '../events/envelope';

export const INTEL_QUERIES: readonly IntelQuery[] = ['callers', 'callees', 'impact'];

/** One node of an answer, at its distance from the symbol (1 = a direct caller, callee or dependant). */
export interface IntelItem {
  node: GraphNode;
  depth: number;
  /** The node one step closer to the symbol (what this one calls, is called by, or depends on). */
  via?: string;
  /** The relationship type that reached it (impact: calls, imports, inherits or implements). */
  type?: string;
  /** How sure the analysis was of that call (0..1; a call without one counts as 1). */
  confidence?: number;
}

/**
 * A call the analysis could not resolve to a symbol, reported as written and never guessed: for callees, a call
 * made by `caller`; for callers, a possible caller whose call text ends with the symbol's name.
 */
export interface UnresolvedCall {
  caller: GraphNode;
  call: string;
  depth: number;
}

export interface IntelAnswer {
  items: IntelItem[];
  /** How many there are in all (more than `items` when the answer was capped). */
  total: number;
  truncated: boolean;
  unresolved: UnresolvedCall[];
}

/** Why a query failed, in the terms the panel shows. */
export interface IntelError {
  kind: 'unknown_symbol' | 'unavailable' | 'unauthorized' | 'failed';
  status: number;
  message: string;
}

export interface IntelSection {
  /** `loading`: the first answer is on its way; `ready` and `error` stay while a refresh runs (`refreshing`). */
  state: 'loading' | 'ready' | 'error';
  refreshing: boolean;
  answer: IntelAnswer | null;
  error: IntelError | null;
}

export interface IntelView {
  symbol: string | null;
  impactDepth: number;
  /** Callers include possible callers (unresolved calls naming the symbol): a bounded scan, so only on request. */
  possibleCallers: boolean;
  sections: Record<IntelQuery, IntelSection>;
}

/** Where the answers come from: graph-api in the page, a fake in tests. */
export interface IntelSource {
  /** `unresolved`: callers also lists possible callers, calls the analysis could not resolve that name the symbol. */
  query(kind: IntelQuery, symbol: string, depth: number, signal: AbortSignal, unresolved: boolean): Promise<unknown>;
}

/** Callers and callees: direct ones. Impact: this many hops unless the user picks another. */
export const CALL_DEPTH = 1;
export const DEFAULT_IMPACT_DEPTH = 3;
export const MAX_IMPACT_DEPTH = 5;
/** While relevant change sets keep coming, at most one refresh per this many milliseconds. */
export const REFRESH_GAP_MS = 400;

// ---------------------------------------------------------------------------------------------------------------
// Reading the answers

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** A SymbolRef (`{id, kind, name, file?, line_start?, line_end?}`), or null when it is not one. */
function asNode(v: unknown): GraphNode | null {
  if (!isObject(v) || typeof v.id !== 'string') return null;
  return {
    id: v.id,
    kind: typeof v.kind === 'string' ? v.kind : '?',
    name: typeof v.name === 'string' ? v.name : v.id,
    file: typeof v.file === 'string' ? v.file : undefined,
    line_start: typeof v.line_start === 'number' ? v.line_start : undefined,
    line_end: typeof v.line_end === 'number' ? v.line_end : undefined,
  };
}

/** One `{node, depth?, via?, type?, confidence?}` of `results` or of an impact level. */
function asItem(v: unknown, depth: number): IntelItem | null {
  if (!isObject(v)) return null;
  const node = asNode(v.node);
  if (!node) return null;
  return {
    node,
    depth: typeof v.depth === 'number' ? v.depth : depth,
    via: typeof v.via === 'string' ? v.via : undefined,
    type: typeof v.type === 'string' ? v.type : undefined,
    confidence: typeof v.confidence === 'number' ? v.confidence : undefined,
  };
}

function asUnresolved(v: unknown): UnresolvedCall | null {
  if (!isObject(v) || typeof v.call !== 'string') return null;
  const caller = asNode(v.node);
  if (!caller) return null;
  return { caller, call: v.call, depth: typeof v.depth === 'number' ? v.depth : 1 };
}

/**
 * Reads an answer of graph-api's `callers`/`callees` (`results`, `unresolved`, `counts.results`) or `impact`
 * (`levels` of `{depth, nodes}`, `counts.total`) into IntelAnswer (graph-api's OpenAPI document has the shapes); items come out
 * in depth order, each node once.
 */
export function readAnswer(kind: IntelQuery, body: unknown): IntelAnswer {
  const b = isObject(body) ? body : {};
  const items: IntelItem[] = [];
  const seen = new Set<string>();
  const push = (raw: unknown, depth: number) => {
    const item = asItem(raw, depth);
    if (item && !seen.has(item.node.id)) {
      seen.add(item.node.id);
      items.push(item);
    }
  };
  if (kind === 'impact') {
    for (const level of list(b.levels)) {
      if (!isObject(level)) continue;
      const depth = typeof level.depth === 'number' ? level.depth : 1;
      for (const raw of list(level.nodes)) push(raw, depth);
    }
  } else {
    for (const raw of list(b.results)) push(raw, 1);
  }
  items.sort((x, y) => x.depth - y.depth);
  const unresolved = list(b.unresolved)
    .map(asUnresolved)
    .filter((u): u is UnresolvedCall => u !== null);
  const counts = isObject(b.counts) ? b.counts : {};
  const counted = kind === 'impact' ? counts.total : counts.results;
  const total = typeof counted === 'number' ? Math.max(counted, items.length) : items.length;
  return { items, total, truncated: b.truncated === true, unresolved };
}

/** Items grouped by depth, in depth order (the impact section's headings). */
export function byDepth(items: readonly IntelItem[]): Array<{ depth: number; items: IntelItem[] }> {
  const groups = new Map<number, IntelItem[]>();
  for (const item of items) {
    let g = groups.get(item.depth);
    if (!g) groups.set(item.depth, (g = []));
    g.push(item);
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([depth, group]) => ({ depth, items: group }));
}

/** What the panel says about a failure: an unknown symbol and an unavailable service are expected, not alarms. */
export function describeError(e: unknown): IntelError {
  if (e instanceof ApiError) {
    if (e.status === 404) {
      // Other 404s (`unknown_project`: nothing was written to the project yet) say what they are themselves.
      if (e.code !== 'unknown_symbol') return { kind: 'failed', status: 404, message: e.message };
      return { kind: 'unknown_symbol', status: 404, message: 'This symbol is not in the graph (any more).' };
    }
    if (e.status === 503 || e.status === 502 || e.status === 504 || e.status === 0) {
      return { kind: 'unavailable', status: e.status, message: `Not available right now (${e.message}).` };
    }
    if (e.status === 401 || e.status === 403) return { kind: 'unauthorized', status: e.status, message: e.message };
    return { kind: 'failed', status: e.status, message: e.message };
  }
  return { kind: 'failed', status: 0, message: (e as Error)?.message ?? String(e) };
}

// ---------------------------------------------------------------------------------------------------------------
// Freshness

/** The ids a change mentions: its entity, and both ends of a relationship. */
export function mentionedIds(change: CdcEvent): string[] {
  const out: string[] = [];
  if (change.entity?.id) out.push(change.entity.id);
  const d = change.data as Record<string, unknown>;
  for (const k of ['id', 'source', 'target']) if (typeof d[k] === 'string') out.push(d[k] as string);
  return out;
}

/** Whether a change can alter an answer about the watched nodes (a reset alters every answer). */
export function touches(changes: readonly CdcEvent[], watched: ReadonlySet<string>): boolean {
  for (const c of changes) {
    if (c.type === 'graph_reset') return true;
    if (!c.type.startsWith('node_') && !c.type.startsWith('relationship_')) continue;
    for (const id of mentionedIds(c)) if (watched.has(id)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------------
// The live model

function emptySection(): IntelSection {
  return { state: 'loading', refreshing: false, answer: null, error: null };
}

function emptySections(): Record<IntelQuery, IntelSection> {
  return { callers: emptySection(), callees: emptySection(), impact: emptySection() };
}

export class NodeIntel {
  private symbol: string | null = null;
  private impactDepth = DEFAULT_IMPACT_DEPTH;
  private possibleCallers = false;
  private sections = emptySections();
  /** Bumped by every selection or depth change: answers of an older generation are dropped. */
  private generation = 0;
  private inFlight: AbortController | null = null;
  /** A relevant change arrived while a refresh ran, or within the gap: refresh once more. */
  private pending = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastStarted = -Infinity;
  private watchedIds = new Set<string>();

  constructor(
    private readonly source: IntelSource,
    private readonly onChange: (view: IntelView) => void,
    private readonly options: {
      /**
       * The symbol's members (what it defines, transitively): impact is walked from them too, so a change that
       * mentions one makes the answers stale as well.
       */
      membersOf?: (id: string) => Iterable<string>;
      now?: () => number;
    } = {},
  ) {}

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  get view(): IntelView {
    return {
      symbol: this.symbol,
      impactDepth: this.impactDepth,
      possibleCallers: this.possibleCallers,
      sections: { ...this.sections },
    };
  }

  /**
   * The ids whose changes make the answers stale: the symbol, its members and every node of its answers (possible
   * callers included). A node that newly gets an unresolved call naming the symbol mentions none of them: possible
   * callers are as fresh as the last refresh.
   */
  get watched(): ReadonlySet<string> {
    return this.watchedIds;
  }

  /** Follows another symbol (null: none); its answers load at once. */
  select(symbol: string | null): void {
    if (symbol === this.symbol) return;
    this.symbol = symbol;
    this.possibleCallers = false;
    this.sections = emptySections();
    this.restart();
  }

  /** Looks for possible callers too (until the selection moves on). */
  findPossibleCallers(): void {
    if (this.possibleCallers || this.symbol === null) return;
    this.possibleCallers = true;
    this.restart();
  }

  setImpactDepth(depth: number): void {
    const d = Math.min(MAX_IMPACT_DEPTH, Math.max(1, Math.round(depth)));
    if (d === this.impactDepth) return;
    this.impactDepth = d;
    this.sections = { ...this.sections, impact: emptySection() };
    this.restart();
  }

  /** Asks again now (the panel's retry). */
  refresh(): void {
    this.clearTimer();
    this.pending = false;
    void this.load();
  }

  /** A stream entry arrived: refresh if it mentions what the answers are about. */
  onChanges(changes: readonly CdcEvent[]): void {
    if (this.symbol === null || !touches(changes, this.watchedIds)) return;
    this.schedule();
  }

  /** The page replaced its graph from a snapshot: anything may have changed. */
  onResync(): void {
    if (this.symbol !== null) this.schedule();
  }

  dispose(): void {
    this.symbol = null;
    this.generation++;
    this.clearTimer();
    this.inFlight?.abort();
    this.inFlight = null;
  }

  private restart(): void {
    this.generation++;
    this.clearTimer();
    this.pending = false;
    this.inFlight?.abort();
    this.inFlight = null;
    this.rewatch();
    this.emit();
    if (this.symbol !== null) void this.load();
  }

  private schedule(): void {
    if (this.inFlight || this.timer !== null) {
      this.pending = true;
      return;
    }
    const wait = Math.max(0, this.lastStarted + REFRESH_GAP_MS - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.load();
    }, wait);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private async load(): Promise<void> {
    const symbol = this.symbol;
    if (symbol === null) return;
    this.inFlight?.abort();
    const controller = new AbortController();
    this.inFlight = controller;
    const generation = this.generation;
    this.pending = false;
    this.lastStarted = this.now();
    for (const q of INTEL_QUERIES) this.patch(q, { refreshing: true });
    this.emit();
    await Promise.all(
      INTEL_QUERIES.map(async (q) => {
        const depth = q === 'impact' ? this.impactDepth : CALL_DEPTH;
        let next: Partial<IntelSection>;
        try {
          const unresolved = q === 'callers' && this.possibleCallers;
          const answer = readAnswer(q, await this.source.query(q, symbol, depth, controller.signal, unresolved));
          next = { state: 'ready', answer, error: null };
        } catch (e) {
          if (controller.signal.aborted) return;
          const error = describeError(e);
          // An unknown symbol has no answers; an outage keeps the last ones, marked by the error.
          next = error.kind === 'unknown_symbol' ? { state: 'error', answer: null, error } : { state: 'error', error };
        }
        if (generation !== this.generation || controller.signal.aborted) return;
        this.patch(q, { ...next, refreshing: false });
        this.rewatch();
        this.emit();
      }),
    );
    if (this.inFlight === controller) this.inFlight = null;
    if (generation === this.generation && this.pending) this.schedule();
  }

  private patch(q: IntelQuery, part: Partial<IntelSection>): void {
    this.sections = { ...this.sections, [q]: { ...this.sections[q], ...part } };
  }

  private rewatch(): void {
    const ids = new Set<string>();
    if (this.symbol !== null) {
      ids.add(this.symbol);
      for (const id of this.options.membersOf?.(this.symbol) ?? []) ids.add(id);
    }
    for (const q of INTEL_QUERIES) {
      for (const item of this.sections[q].answer?.items ?? []) ids.add(item.node.id);
      for (const u of this.sections[q].answer?.unresolved ?? []) ids.add(u.caller.id);
    }
    this.watchedIds = ids;
  }

  private emit(): void {
    this.onChange(this.view);
  }
}
