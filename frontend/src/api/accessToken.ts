/**
 * The access token of a deployment that requires one, and the page's "a token is needed" signal.
 *
 * The token is kept in this tab's sessionStorage (gone when the tab closes, never in a URL, never in
 * localStorage): graph-api gets it as `Authorization: Bearer`, ws-gateway through the WebSocket subprotocol
 * (`bearerSubprotocols`), since a browser cannot set headers on a WebSocket and a `?token=` would be logged.
 * Any 401 (or a 4401 close) calls `reportUnauthorized`, and the page shows AccessTokenPrompt. Free of Vue, so it is
 * unit-tested as is.
 */
const KEY = 'codegraph.token';

/** The subprotocol the dashboard speaks; the gateway selects it, never the bearer one. */
export const PROTOCOL = 'codegraph.v1';
/** Prefix of the subprotocol that carries the token (base64url of its UTF-8 bytes, without padding). */
export const BEARER_PROTOCOL_PREFIX = 'codegraph.bearer.';

/** The part of the Storage API used here (a plain object in tests). */
export interface TokenStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

function sessionStore(): TokenStore | null {
  try {
    return typeof sessionStorage === 'undefined' ? null : sessionStorage;
  } catch {
    return null; // storage disabled by the browser
  }
}

let store: TokenStore | null = sessionStore();

/** For tests: where the token is kept. */
export function useTokenStore(s: TokenStore | null): void {
  store = s;
}

export function accessToken(): string | null {
  try {
    return store?.getItem(KEY) || null;
  } catch {
    return null;
  }
}

export function setAccessToken(token: string | null): void {
  const t = token?.trim() || null;
  if (t) store?.setItem(KEY, t);
  else store?.removeItem(KEY);
  unauthorized = null;
}

/**
 * Earlier dashboards kept the token in localStorage, where it outlived the tab: remove it (it is not read any more;
 * the user enters it once per tab).
 */
export function forgetLegacyToken(legacy: TokenStore | null = typeof localStorage === 'undefined' ? null : localStorage): void {
  try {
    legacy?.removeItem(KEY);
  } catch {
    // storage disabled
  }
}

/** Why the page needs a (new) token: which service refused it, and whether a token had been sent. */
export interface Unauthorized {
  service: 'graph-api' | 'ws-gateway';
  hadToken: boolean;
  message: string;
}

let unauthorized: Unauthorized | null = null;
const listeners = new Set<(u: Unauthorized | null) => void>();

/** A service answered 401 (or closed with 4401): the page asks for a token. */
export function reportUnauthorized(service: Unauthorized['service'], message: string): void {
  if (unauthorized) return; // the first refusal says it; the others are the same story
  unauthorized = { service, hadToken: accessToken() !== null, message };
  for (const l of [...listeners]) l(unauthorized);
}

export function currentUnauthorized(): Unauthorized | null {
  return unauthorized;
}

/** Calls `handler` now and whenever a refusal is reported; returns the unsubscribe function. */
export function onUnauthorized(handler: (u: Unauthorized | null) => void): () => void {
  listeners.add(handler);
  handler(unauthorized);
  return () => listeners.delete(handler);
}

/** base64url (RFC 4648 §5) of the token's UTF-8 bytes, without padding: only characters a subprotocol may hold. */
export function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The subprotocols to offer the gateway: `codegraph.v1` and, with a token, `codegraph.bearer.<base64url>`.
 * Without a token none is offered, so an open stack works with any gateway.
 */
export function bearerSubprotocols(token: string | null): string[] {
  return token ? [PROTOCOL, `${BEARER_PROTOCOL_PREFIX}${base64url(token)}`] : [];
}
