/**
 * The tests' own client of graph-api: writes that make events, and reads to compare the page with. With a token
 * (a stack with `[auth]` tokens) every request carries it as `Authorization: Bearer`.
 */
import { expect } from '@playwright/test';
// The same contract the dashboard reads.
import type { GraphStats as Stats } from '../../../frontend/src/api/types';

export class TestApi {
  constructor(
    readonly baseUrl: string,
    readonly project: string,
    readonly token: string | null = null,
  ) {}

  private url(p: string, query: Record<string, string> = {}): string {
    const params = new URLSearchParams({ project: this.project, ...query });
    return `${this.baseUrl}/api/graph${p}?${params}`;
  }

  async request<T>(method: string, p: string, body?: unknown, query: Record<string, string> = {}): Promise<T> {
    const res = await fetch(this.url(p, query), {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    expect(res.ok, `${method} ${p} → ${res.status} ${text}`).toBe(true);
    return (text ? JSON.parse(text) : null) as T;
  }

  stats(): Promise<Stats> {
    return this.request('GET', '/stats');
  }

  createNode(id: string, name: string, kind = 'function', file = 'src/app.py'): Promise<unknown> {
    return this.request('POST', '/nodes', { id, kind, name, file, line_start: 1, line_end: 2, properties: {} });
  }

  createRelationship(id: string, type: string, source: string, target: string): Promise<unknown> {
    return this.request('POST', '/relationships', { id, type, source, target, properties: {} });
  }

  deleteNode(id: string): Promise<unknown> {
    return this.request('DELETE', `/nodes/${encodeURIComponent(id)}`);
  }

  /** Many nodes (and a `contains` from the first to each other one) in one request. */
  batch(operations: unknown[]): Promise<{ last_event_id: string | null }> {
    return this.request('POST', '/batch', { operations });
  }

  reanalyze(path: string, mode: 'full' | 'incremental' = 'full'): Promise<{ job_id: string }> {
    return this.request('POST', '/admin/reanalyze', { path, mode });
  }

  job(id: string): Promise<Record<string, unknown>> {
    return this.request('GET', `/admin/jobs/${encodeURIComponent(id)}`);
  }
}
