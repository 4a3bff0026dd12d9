import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, GraphApi } from '../api/GraphApi';
import { setAccessToken, useTokenStore } from '../api/accessToken';
import type { IntelQuery } from '../api/types';
import type { CdcEvent } from '../events/envelope';
import {
  byDepth,
  describeError,
  NodeIntel,
  readAnswer,
  REFRESH_GAP_MS,
  touches,
  type IntelSource,
  type IntelView,
} from './nodeIntel';

const ref = (id: string, name = id.split(':').pop()!, kind = 'function') => ({ id, kind, name, file: 'a.py', line_start: 3 });

/** graph-api's answers, in the shapes of its OpenAPI document. */
function callersBody(symbol: string, callers: string[], total = callers.length) {
  return {
    project: 'p',
    symbol: ref(symbol),
    resolution: { query: symbol, by: 'id', other_matches: [] },
    direction: 'callers',
    depth: 1,
    min_confidence: 0,
    results: callers.map((c) => ({ node: ref(c), depth: 1, relationship_id: `${c}|calls|${symbol}`, confidence: 1, via: symbol })),
    unresolved: [],
    unresolved_searched: false,
    counts: { results: total, by_depth: { '1': total }, unresolved: 0 },
    truncated: total > callers.length,
  };
}

function impactBody(symbol: string, levels: string[][]) {
  return {
    project: 'p',
    symbol: ref(symbol),
    depth: 3,
    limit: 1000,
    seeds: 1,
    levels: levels.map((ids, i) => ({
      depth: i + 1,
      nodes: ids.map((id) => ({ node: ref(id), relationship_id: `r-${id}`, type: i === 1 ? 'imports' : 'calls', via: symbol })),
    })),
    counts: { total: levels.flat().length, by_depth: {}, by_kind: {}, by_type: {} },
    truncated: false,
  };
}

function change(type: string, data: Record<string, unknown>, kind = type.split('_')[0]): CdcEvent {
  return { id: '1-0', index: 0, project: 'p', type, entity: { kind, id: String(data.id ?? '') }, data, ts: '' };
}

describe('reading the answers', () => {
  it('reads callers and callees: results in depth order, counts, unresolved calls', () => {
    const body = {
      ...callersBody('f', []),
      direction: 'callees',
      depth: 2,
      results: [
        { node: ref('g'), depth: 1, relationship_id: 'r1', confidence: 0.6, via: 'f' },
        { node: ref('h'), depth: 2, relationship_id: 'r2', via: 'g' },
        { node: ref('i'), depth: 1, relationship_id: 'r3', confidence: 1, via: 'f' },
      ],
      unresolved: [{ node: ref('f'), call: 'os.path.join', depth: 1 }, { call: 'no node' }],
      counts: { results: 3, by_depth: { '1': 2, '2': 1 }, unresolved: 1 },
    };
    const a = readAnswer('callees', body);
    expect(a.items.map((i) => [i.node.id, i.depth])).toEqual([
      ['g', 1],
      ['i', 1],
      ['h', 2],
    ]);
    expect(a.items[0]).toMatchObject({ confidence: 0.6, via: 'f', node: { name: 'g', kind: 'function', file: 'a.py', line_start: 3 } });
    expect(a.total).toBe(3);
    expect(a.truncated).toBe(false);
    expect(a.unresolved).toEqual([{ caller: expect.objectContaining({ id: 'f' }), call: 'os.path.join', depth: 1 }]);
  });

  it('reads an impact answer by level, with the total of a capped answer', () => {
    const body = { ...impactBody('f', [['a', 'b'], ['c']]), truncated: true, counts: { total: 9 } };
    const a = readAnswer('impact', body);
    expect(a.items.map((i) => [i.node.id, i.depth, i.type])).toEqual([
      ['a', 1, 'calls'],
      ['b', 1, 'calls'],
      ['c', 2, 'imports'],
    ]);
    expect(a.total).toBe(9);
    expect(a.truncated).toBe(true);
    expect(byDepth(a.items).map((g) => [g.depth, g.items.length])).toEqual([
      [1, 2],
      [2, 1],
    ]);
  });

  it('reads nothing from a body that is not an answer', () => {
    expect(readAnswer('callers', null)).toEqual({ items: [], total: 0, truncated: false, unresolved: [] });
    expect(readAnswer('impact', { levels: [{ depth: 1, nodes: [{ node: { name: 'no id' } }] }] }).items).toEqual([]);
  });
});

describe('errors', () => {
  it('an unknown symbol, an outage and a refusal are told apart', () => {
    expect(describeError(new ApiError('no node', 404, 'unknown_symbol')).kind).toBe('unknown_symbol');
    expect(describeError(new ApiError('no such project', 404, 'unknown_project'))).toMatchObject({
      kind: 'failed',
      message: 'no such project',
    });
    // A 404 without graph-api's body (a proxy, an older graph-api without the route) is not "unknown symbol".
    expect(describeError(new ApiError('404 Not Found', 404, 'http_404')).kind).toBe('failed');
    expect(describeError(new ApiError('redis down', 503, 'unavailable'))).toMatchObject({ kind: 'unavailable', status: 503 });
    expect(describeError(new ApiError('graph-api unreachable: x', 0, 'unreachable')).kind).toBe('unavailable');
    expect(describeError(new ApiError('no token', 401, 'unauthorized')).kind).toBe('unauthorized');
    expect(describeError(new Error('boom'))).toMatchObject({ kind: 'failed', message: 'boom' });
  });
});

describe('which changes make the answers stale', () => {
  const watched = new Set(['f', 'g']);
  it('a change of a watched node, or a relationship at either end of one', () => {
    expect(touches([change('node_updated', { id: 'g' })], watched)).toBe(true);
    expect(touches([change('relationship_added', { id: 'r', type: 'calls', source: 'x', target: 'f' })], watched)).toBe(true);
    expect(touches([change('relationship_deleted', { id: 'r', type: 'calls', source: 'g', target: 'y' })], watched)).toBe(true);
    expect(touches([change('graph_reset', {}, 'project')], watched)).toBe(true);
  });
  it('not a change elsewhere, nor a job event', () => {
    expect(touches([change('node_added', { id: 'x' }), change('relationship_added', { id: 'r', source: 'x', target: 'y' })], watched)).toBe(
      false,
    );
    expect(touches([change('analysis_progress', { job_id: 'f' }, 'job')], watched)).toBe(false);
  });
});

/** A source whose answers the test gives, one query at a time. */
class FakeSource implements IntelSource {
  calls: Array<{
    kind: IntelQuery;
    symbol: string;
    depth: number;
    unresolved: boolean;
    resolve(body: unknown): void;
    reject(e: unknown): void;
    signal: AbortSignal;
  }> = [];

  query(kind: IntelQuery, symbol: string, depth: number, signal: AbortSignal, unresolved: boolean): Promise<unknown> {
    return new Promise((resolve, reject) => this.calls.push({ kind, symbol, depth, unresolved, resolve, reject, signal }));
  }

  /** Answers every open call for `symbol` with callers/callees `calls` and impact `impact`. */
  answer(symbol: string, calls: string[], impact: string[][] = [calls]): void {
    for (const c of this.calls.splice(0)) {
      if (c.symbol !== symbol) continue;
      c.resolve(c.kind === 'impact' ? impactBody(symbol, impact) : { ...callersBody(symbol, calls), direction: c.kind });
    }
  }
}

const settled = () => new Promise<void>((r) => setTimeout(r, 0));

describe('NodeIntel', () => {
  let source: FakeSource;
  let view: IntelView;
  let intel: NodeIntel;
  let members: string[];

  beforeEach(() => {
    vi.useFakeTimers();
    source = new FakeSource();
    members = [];
    intel = new NodeIntel(source, (v) => (view = v), { membersOf: () => members });
  });
  afterEach(() => {
    intel.dispose();
    vi.useRealTimers();
  });

  async function flush(): Promise<void> {
    await vi.advanceTimersByTimeAsync(0);
  }

  it('loads callers and callees (direct) and the impact set (3 hops) of the selected symbol', async () => {
    intel.select('f');
    expect(source.calls.map((c) => [c.kind, c.symbol, c.depth])).toEqual([
      ['callers', 'f', 1],
      ['callees', 'f', 1],
      ['impact', 'f', 3],
    ]);
    expect(view.sections.callers.state).toBe('loading');
    source.answer('f', ['a', 'b'], [['a', 'b'], ['c']]);
    await flush();
    expect(view.sections.callers).toMatchObject({ state: 'ready', refreshing: false, error: null });
    expect(view.sections.callers.answer!.total).toBe(2);
    expect(view.sections.impact.answer!.items.map((i) => i.node.id)).toEqual(['a', 'b', 'c']);
    expect([...intel.watched].sort()).toEqual(['a', 'b', 'c', 'f']);
  });

  it('drops the answers of a selection that has moved on', async () => {
    intel.select('f');
    const old = source.calls.splice(0);
    intel.select('g');
    expect(old.every((c) => c.signal.aborted)).toBe(true);
    old.forEach((c) => c.resolve(callersBody('f', ['stale'])));
    await flush();
    expect(view.symbol).toBe('g');
    expect(view.sections.callers.state).toBe('loading');
    source.answer('g', ['x']);
    await flush();
    expect(view.sections.callers.answer!.items.map((i) => i.node.id)).toEqual(['x']);
  });

  it('asks again once for a burst of change sets that mention what it shows, and not for others', async () => {
    intel.select('f');
    source.answer('f', ['a']);
    await flush();
    intel.onChanges([change('node_added', { id: 'elsewhere' })]);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS * 3);
    expect(source.calls).toHaveLength(0);

    // A new caller of f, then changes of a caller: one refresh (coalesced), sections kept while it runs.
    intel.onChanges([change('relationship_added', { id: 'r', type: 'calls', source: 'n', target: 'f' })]);
    intel.onChanges([change('node_updated', { id: 'a' })]);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS);
    expect(source.calls.map((c) => c.kind)).toEqual(['callers', 'callees', 'impact']);
    expect(view.sections.callers).toMatchObject({ state: 'ready', refreshing: true });
    // Another change while the refresh runs: one more refresh after it, not before.
    intel.onChanges([change('node_updated', { id: 'f' })]);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS * 3);
    expect(source.calls).toHaveLength(3);
    source.answer('f', ['a', 'n']);
    await flush();
    expect(view.sections.callers.answer!.total).toBe(2);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS);
    expect(source.calls).toHaveLength(3);
    source.answer('f', ['a', 'n']);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS * 3);
    expect(source.calls).toHaveLength(0);
  });

  it('watches the members of the symbol too (impact is walked from them)', async () => {
    members = ['f.m1'];
    intel.select('f');
    source.answer('f', []);
    await flush();
    intel.onChanges([change('relationship_added', { id: 'r', type: 'calls', source: 'z', target: 'f.m1' })]);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS);
    expect(source.calls).toHaveLength(3);
  });

  it('an outage keeps the last answers and says so; an unknown symbol has none', async () => {
    intel.select('f');
    source.answer('f', ['a']);
    await flush();
    intel.refresh();
    for (const c of source.calls.splice(0)) {
      if (c.kind === 'callers') c.reject(new ApiError('graph-api is not ready', 503, 'unavailable'));
      else c.reject(new ApiError('no node f', 404, 'unknown_symbol'));
    }
    await flush();
    expect(view.sections.callers).toMatchObject({ state: 'error', refreshing: false, error: { kind: 'unavailable', status: 503 } });
    expect(view.sections.callers.answer!.items.map((i) => i.node.id)).toEqual(['a']);
    expect(view.sections.impact).toMatchObject({ state: 'error', answer: null, error: { kind: 'unknown_symbol' } });
    // The retry brings it back.
    intel.refresh();
    source.answer('f', ['a', 'b']);
    await flush();
    expect(view.sections.callers).toMatchObject({ state: 'ready', error: null });
    expect(view.sections.impact.state).toBe('ready');
  });

  it('a deeper impact asks again with that depth', async () => {
    intel.select('f');
    source.answer('f', []);
    await flush();
    intel.setImpactDepth(9);
    expect(view.impactDepth).toBe(5);
    expect(source.calls.find((c) => c.kind === 'impact')!.depth).toBe(5);
    expect(view.sections.impact.state).toBe('loading');
  });

  it('looks for possible callers only when asked, until the selection moves on', async () => {
    intel.select('f');
    expect(source.calls.every((c) => !c.unresolved)).toBe(true);
    source.answer('f', ['a']);
    await flush();
    intel.findPossibleCallers();
    expect(view.possibleCallers).toBe(true);
    expect(source.calls.map((c) => [c.kind, c.unresolved])).toEqual([
      ['callers', true],
      ['callees', false],
      ['impact', false],
    ]);
    const possible = { node: ref('m:report'), call: 'x.f', depth: 1 };
    source.calls.find((c) => c.kind === 'callers')!.resolve({ ...callersBody('f', ['a']), unresolved: [possible], unresolved_searched: true });
    source.calls.shift();
    source.answer('f', ['a']);
    await flush();
    expect(intel.watched.has('m:report')).toBe(true);
    expect(view.sections.callers.answer!.unresolved.map((u) => [u.caller.id, u.call])).toEqual([['m:report', 'x.f']]);
    // A live refresh keeps asking for them.
    intel.onChanges([change('node_updated', { id: 'f' })]);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS);
    expect(source.calls.find((c) => c.kind === 'callers')!.unresolved).toBe(true);
    intel.select('g');
    expect(view.possibleCallers).toBe(false);
    expect(source.calls.filter((c) => c.symbol === 'g').every((c) => !c.unresolved)).toBe(true);
  });

  it('stops asking once disposed', async () => {
    intel.select('f');
    const calls = source.calls.splice(0);
    intel.dispose();
    expect(calls.every((c) => c.signal.aborted)).toBe(true);
    intel.onChanges([change('graph_reset', {}, 'project')]);
    await vi.advanceTimersByTimeAsync(REFRESH_GAP_MS * 2);
    expect(source.calls).toHaveLength(0);
  });
});

describe('GraphApi.intel', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    setAccessToken(null);
    useTokenStore(null);
  });

  it('asks graph-api for the route with the project, the symbol and the depth, with the token', async () => {
    const items = new Map<string, string>();
    useTokenStore({ getItem: (k) => items.get(k) ?? null, setItem: (k, v) => void items.set(k, v), removeItem: (k) => void items.delete(k) });
    setAccessToken('s3cret');
    const seen: Array<{ url: string; init: RequestInit }> = [];
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      seen.push({ url, init });
      return new Response(JSON.stringify(callersBody('py:a.py:f', [])), { status: 200 });
    });
    const body = await new GraphApi('my-proj').intel('callers', 'py:a.py:f', 2);
    expect(readAnswer('callers', body).total).toBe(0);
    expect(seen[0].url).toBe('/api/graph/callers?project=my-proj&symbol=py%3Aa.py%3Af&depth=2');
    // The caller's signal aborts the request, and does not replace its timeout.
    const caller = new AbortController();
    await new GraphApi('my-proj').intel('callers', 'f', 1, caller.signal, true);
    expect(seen[1].url).toBe('/api/graph/callers?project=my-proj&symbol=f&depth=1&unresolved=true');
    const sent = seen[1].init.signal!;
    expect(sent).not.toBe(caller.signal);
    expect(sent.aborted).toBe(false);
    caller.abort();
    expect(sent.aborted).toBe(true);
    expect((seen[0].init.headers as Record<string, string>).Authorization).toBe('Bearer s3cret');
    await settled();
  });
});
