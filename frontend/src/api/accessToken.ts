/**
 * The access token of a deployment that requires one (graph-api writes take `Authorization: Bearer`, ws-gateway
 * takes `?token=`). Kept in this browser's localStorage; without one the dashboard works against an open stack.
 */
const KEY = 'codegraph.token';

export function accessToken(): string | null {
  try {
    return localStorage.getItem(KEY) || null;
  } catch {
    return null;
  }
}

export function setAccessToken(token: string | null): void {
  if (token) localStorage.setItem(KEY, token);
  else localStorage.removeItem(KEY);
}
