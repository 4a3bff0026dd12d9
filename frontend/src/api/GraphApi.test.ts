import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { currentUnauthorized, setAccessToken, useTokenStore, type TokenStore } from './accessToken';
import { ApiError, request, requestHeaders } from './GraphApi';

class MemoryStore implements TokenStore {
  items = new Map<string, string>();
  getItem = (k: string) => this.items.get(k) ?? null;
  setItem = (k: string, v: string) => void this.items.set(k, v);
  removeItem = (k: string) => void this.items.delete(k);
}

interface Call {
  url: string;
  init: RequestInit;
}

/** A fetch that records its calls and answers `status` with `body`. */
function fakeFetch(status: number, body: unknown, calls: Call[]): typeof fetch {
  return (async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
  }) as unknown as typeof fetch;
}

beforeEach(() => useTokenStore(new MemoryStore()));
afterEach(() => {
  setAccessToken(null);
  useTokenStore(null);
});

describe('graph-api requests', () => {
  it('send the token as Authorization: Bearer, and JSON with every body', () => {
    expect(requestHeaders(null, false)).toEqual({ Accept: 'application/json' });
    expect(requestHeaders('t', true)).toEqual({
      Accept: 'application/json',
      'Content-Type': 'application/json',
      Authorization: 'Bearer t',
    });
  });

  it('a POST without data still sends {} as application/json (cancel, reset)', async () => {
    setAccessToken('s3cret');
    const calls: Call[] = [];
    await request('/admin/jobs/j1/cancel', { project: 'p' }, { method: 'POST', body: '{}', fetch: fakeFetch(200, {}, calls) });
    const headers = calls[0].init.headers as Record<string, string>;
    expect(calls[0].url).toBe('/api/graph/admin/jobs/j1/cancel?project=p');
    expect(calls[0].url).not.toContain('s3cret');
    expect(calls[0].init.body).toBe('{}');
    expect(headers['Content-Type']).toBe('application/json');
    expect(headers.Authorization).toBe('Bearer s3cret');
  });

  it('a 401 becomes an ApiError and asks the page for a token', async () => {
    const calls: Call[] = [];
    const refused = { error: { code: 'unauthorized', message: 'a token is required' } };
    const err = await request('/stats', { project: 'p' }, { fetch: fakeFetch(401, refused, calls) }).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(401);
    expect(currentUnauthorized()).toEqual({ service: 'graph-api', hadToken: false, message: 'a token is required' });
  });

  it('a 403 (a token without the scope) is an error, not a request for a token', async () => {
    setAccessToken('read-only');
    const forbidden = { error: { code: 'forbidden', message: 'this token may not write' } };
    const err = await request('/admin/reanalyze', {}, { method: 'POST', body: '{}', fetch: fakeFetch(403, forbidden, []) }).catch(
      (e) => e,
    );
    expect((err as ApiError).code).toBe('forbidden');
    expect(currentUnauthorized()).toBeNull();
  });
});
