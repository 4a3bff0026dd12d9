import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  accessToken,
  base64url,
  bearerSubprotocols,
  currentUnauthorized,
  forgetLegacyToken,
  onUnauthorized,
  reportUnauthorized,
  setAccessToken,
  useTokenStore,
  type TokenStore,
  type Unauthorized,
} from './accessToken';

/** A Storage in memory, as sessionStorage behaves within one tab. */
class MemoryStore implements TokenStore {
  items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

/** The token a gateway reads back from the subprotocol (what ws-gateway does, in TypeScript). */
function decodeBearer(protocol: string): string {
  const b64 = protocol.slice('codegraph.bearer.'.length).replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

let store: MemoryStore;

beforeEach(() => {
  store = new MemoryStore();
  useTokenStore(store);
});

afterEach(() => {
  setAccessToken(null);
  useTokenStore(null);
});

describe('the access token', () => {
  it('is kept in the given (session) store, trimmed, and cleared by an empty value', () => {
    expect(accessToken()).toBeNull();
    setAccessToken('  s3cret \n');
    expect(accessToken()).toBe('s3cret');
    expect(store.items.get('codegraph.token')).toBe('s3cret');
    setAccessToken('   ');
    expect(accessToken()).toBeNull();
    expect(store.items.size).toBe(0);
  });

  it('works without storage (disabled by the browser): no token', () => {
    useTokenStore(null);
    setAccessToken('x');
    expect(accessToken()).toBeNull();
  });

  it('removes a token an earlier dashboard left in localStorage', () => {
    const legacy = new MemoryStore();
    legacy.setItem('codegraph.token', 'old');
    legacy.setItem('codegraph.reanalyze.path', '/repo');
    forgetLegacyToken(legacy);
    expect([...legacy.items.keys()]).toEqual(['codegraph.reanalyze.path']);
  });

  it('a refusal is reported once, saying whether a token had been sent, until a new token is set', () => {
    const seen: Array<Unauthorized | null> = [];
    const off = onUnauthorized((u) => seen.push(u));
    expect(seen).toEqual([null]);
    setAccessToken('wrong');
    reportUnauthorized('graph-api', 'invalid token');
    reportUnauthorized('ws-gateway', 'invalid token');
    expect(seen).toHaveLength(2);
    expect(currentUnauthorized()).toEqual({ service: 'graph-api', hadToken: true, message: 'invalid token' });
    setAccessToken('right');
    expect(currentUnauthorized()).toBeNull();
    off();
    reportUnauthorized('ws-gateway', 'a token is required');
    expect(seen).toHaveLength(2);
  });
});

describe('the WebSocket subprotocols', () => {
  it('offer codegraph.v1 first, then the token as base64url without padding', () => {
    expect(bearerSubprotocols('s3cret')).toEqual(['codegraph.v1', 'codegraph.bearer.czNjcmV0']);
    expect(bearerSubprotocols(null)).toEqual([]);
    expect(bearerSubprotocols('')).toEqual([]);
  });

  it('encode as RFC 4648 base64url: - and _ instead of + and /, no =', () => {
    expect(base64url('~~~')).toBe('fn5-'); // base64 "fn5+"
    expect(base64url('???')).toBe('Pz8_'); // base64 "Pz8/"
    expect(base64url('a')).toBe('YQ'); // base64 "YQ=="
    expect(base64url('ab')).toBe('YWI'); // base64 "YWI="
    expect(base64url('ÿ')).toBe('w78'); // UTF-8 C3 BF
  });

  it('carry any token, UTF-8 included, in characters a Sec-WebSocket-Protocol value may hold', () => {
    for (const token of ['s3cret', 'with space', 'a+b/c=d', 'Grüße, 世界 🔑', 'x'.repeat(300)]) {
      const [v1, bearer] = bearerSubprotocols(token);
      expect(v1).toBe('codegraph.v1');
      expect(bearer).toMatch(/^codegraph\.bearer\.[A-Za-z0-9_-]+$/);
      expect(decodeBearer(bearer)).toBe(token);
    }
  });
});
