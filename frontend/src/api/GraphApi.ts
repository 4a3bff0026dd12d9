/**
 * graph-api over HTTP (`/api/graph/...`, behind the same origin as the page). Every call names its project;
 * failures become an ApiError carrying the server's `{"error": {"code", "message"}}` when there is one. The access
 * token, when the user gave one, goes as `Authorization: Bearer`; a 401 asks the page for one. Every POST carries a
 * JSON body with `Content-Type: application/json` (graph-api refuses other POSTs, so an HTML form on another site
 * cannot make one).
 */
import { accessToken, reportUnauthorized } from './accessToken';
import type {
  AnalysisMode,
  ApiErrorBody,
  GraphNode,
  GraphPage,
  GraphStats,
  IntelQuery,
  Neighborhood,
  Snapshot,
  SnapshotPage,
} from './types';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const TIMEOUT_MS = 15_000;

type Query = Record<string, string | number | null | undefined>;

/** The options of a request: what `fetch` takes, and `fetch` itself (a fake in tests). */
export type RequestOptions = RequestInit & { fetch?: typeof fetch };

/** The headers of a request: JSON accepted, JSON sent whenever there is a body, the token if there is one. */
export function requestHeaders(token: string | null, hasBody: boolean): Record<string, string> {
  return {
    Accept: 'application/json',
    ...(hasBody ? { 'Content-Type': 'application/json' } : {}),
    ...(token ? { Authorization: `Bearer ${token}` } : {}),
  };
}

export async function request<T>(path: string, query: Query, init: RequestOptions = {}): Promise<T> {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== '') params.set(k, String(v));
  const qs = params.toString();
  const { fetch: doFetch = fetch, ...options } = init;
  let response: Response;
  try {
    response = await doFetch(`/api/graph${path}${qs ? `?${qs}` : ''}`, {
      ...options,
      headers: requestHeaders(accessToken(), options.body !== undefined && options.body !== null),
      signal: options.signal ?? AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (e) {
    throw new ApiError(`graph-api unreachable: ${(e as Error).message}`, 0, 'unreachable');
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON, e.g. an HTML error page of the proxy.
  }
  if (!response.ok) {
    const err = (body as ApiErrorBody | null)?.error;
    const message = err?.message ?? `${response.status} ${response.statusText}`.trim();
    if (response.status === 401) reportUnauthorized('graph-api', message);
    throw new ApiError(message, response.status, err?.code ?? `http_${response.status}`);
  }
  return body as T;
}

export function listProjects(): Promise<{ projects: string[] }> {
  return request('/projects', {});
}

export class GraphApi {
  constructor(readonly project: string) {}

  private q(extra: Query = {}): Query {
    return { project: this.project, ...extra };
  }

  stats(): Promise<GraphStats> {
    return request('/stats', this.q());
  }

  subgraphPage(cursor: string | null, limit: number): Promise<GraphPage> {
    return request('/subgraph', this.q({ cursor, limit }));
  }

  snapshotPage(cursor: string | null, limit: number): Promise<SnapshotPage> {
    return request('/snapshot', this.q({ cursor, limit }));
  }

  /** Every page of a snapshot; `since` is the first page's (the point the whole snapshot is consistent with). */
  async snapshot(limit = 5000): Promise<Snapshot> {
    const first = await this.snapshotPage(null, limit);
    const out: Snapshot = { since: first.since, nodes: [...first.nodes], relationships: [...first.relationships] };
    let cursor = first.next_cursor;
    while (cursor) {
      const page = await this.snapshotPage(cursor, limit);
      out.nodes.push(...page.nodes);
      out.relationships.push(...page.relationships);
      cursor = page.next_cursor;
    }
    return out;
  }

  search(q: string, kind: string | null, limit = 20): Promise<{ nodes: GraphNode[] }> {
    return request('/nodes/search', this.q({ q, kind, limit }));
  }

  node(id: string): Promise<GraphNode> {
    return request(`/nodes/${encodeURIComponent(id)}`, this.q());
  }

  neighbors(id: string, direction: 'out' | 'in' | 'both' = 'both', depth = 1): Promise<Neighborhood> {
    return request(`/nodes/${encodeURIComponent(id)}/neighbors`, this.q({ direction, depth }));
  }

  /**
   * Callers, callees or the impact set of a symbol (a node id), `depth` hops out; the raw answer. `unresolved`:
   * callers lists possible callers too (unresolved calls that name the symbol).
   */
  intel(kind: IntelQuery, symbol: string, depth: number, signal?: AbortSignal, unresolved = false): Promise<unknown> {
    // The caller's signal replaces request()'s timeout; keep both.
    const bounded = signal ? AbortSignal.any([signal, AbortSignal.timeout(TIMEOUT_MS)]) : undefined;
    return request(`/${kind}`, this.q({ symbol, depth, unresolved: unresolved ? 'true' : null }), { signal: bounded });
  }

  reanalyze(path: string, mode: AnalysisMode): Promise<{ job_id: string }> {
    return request('/admin/reanalyze', this.q(), { method: 'POST', body: JSON.stringify({ path, mode }) });
  }

  cancelJob(jobId: string): Promise<unknown> {
    return request(`/admin/jobs/${encodeURIComponent(jobId)}/cancel`, this.q(), { method: 'POST', body: '{}' });
  }
}
