/**
 * The dashboard against a stack that requires tokens (its own stack, started here with `[auth]` tokens; the
 * suite's shared stack stays open): the page asks for a token, keeps it in this tab only, and sends it as
 * `Authorization: Bearer` to graph-api and as the `codegraph.bearer.<base64url>` subprotocol to the gateway (which
 * selects `codegraph.v1`), never in a URL. A read-only token watches but may not start an analysis; a token with
 * the write scope may.
 *
 * With E2E_BASE_URL (an already running stack) it runs only when E2E_AUTH_STACK=1 says that stack was started
 * with these tokens: CODEGRAPH__AUTH__READ_TOKENS=e2e-reader-token,e2e-operator-token and
 * CODEGRAPH__AUTH__WRITE_TOKENS=e2e-operator-token.
 */
import { test as base, expect, type CDPSession, type Page } from '@playwright/test';
import { randomUUID } from 'node:crypto';
import { TestApi } from '../support/api';
import { pageErrors } from '../support/fixtures';
import { startStack, stopStack, type StackInfo } from '../support/stack';

const READER = 'e2e-reader-token';
const OPERATOR = 'e2e-operator-token';
const EXTERNAL = Boolean(process.env.E2E_BASE_URL && process.env.E2E_API_URL);

/** What the browser sent and got in each WebSocket handshake (Chrome DevTools Protocol: the page sees neither). */
interface Handshake {
  url: string;
  request: Record<string, string>;
  response?: { status: number; headers: Record<string, string> };
}

const lower = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));

async function recordHandshakes(page: Page): Promise<Handshake[]> {
  const cdp: CDPSession = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const byId = new Map<string, Handshake>();
  const all: Handshake[] = [];
  cdp.on('Network.webSocketCreated', (e) => {
    const h: Handshake = { url: e.url, request: {} };
    byId.set(e.requestId, h);
    all.push(h);
  });
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
    const h = byId.get(e.requestId);
    if (h) h.request = lower(e.request.headers as Record<string, string>);
  });
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    const h = byId.get(e.requestId);
    if (h) h.response = { status: e.response.status, headers: lower(e.response.headers as Record<string, string>) };
  });
  return all;
}

/** Every URL the page asked for (documents, XHR/fetch, WebSockets). */
function recordUrls(page: Page): string[] {
  const urls: string[] = [];
  page.on('request', (r) => urls.push(r.url()));
  page.on('websocket', (ws) => urls.push(ws.url()));
  return urls;
}

const test = base.extend<{ pageErrors: string[] }, { stack: StackInfo }>({
  stack: [
    // eslint-disable-next-line no-empty-pattern
    async ({}, use) => {
      const stack = await startStack({
        CODEGRAPH__AUTH__READ_TOKENS: `${READER},${OPERATOR}`,
        CODEGRAPH__AUTH__WRITE_TOKENS: OPERATOR,
      });
      try {
        await use(stack);
      } finally {
        await stopStack(stack);
      }
    },
    { scope: 'worker', timeout: 5 * 60_000 },
  ],
  pageErrors,
});

test.skip(EXTERNAL && process.env.E2E_AUTH_STACK !== '1', 'the running stack (E2E_BASE_URL) is not the auth stack');

test.beforeEach(({ stack }) => {
  const missing = ['graph-api', 'ws-gateway'].filter((s) => !stack.services.includes(s));
  test.skip(missing.length > 0, `not built yet: ${missing.join(', ')}`);
});

async function enterToken(page: Page, token: string): Promise<void> {
  await page.getByTestId('token-input').fill(token);
  await Promise.all([page.waitForEvent('load'), page.getByTestId('token-submit').click()]);
}

test('the page asks for a token, then reads and follows live with it, the token in no URL', async ({ page, stack }) => {
  const project = `e2e-auth-${randomUUID().slice(0, 8)}`;
  const handshakes = await recordHandshakes(page);
  const urls = recordUrls(page);
  const authorizations: string[] = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname.startsWith('/api/')) authorizations.push(r.headers().authorization ?? '');
  });

  // Without a token: graph-api answers 401, the gateway closes with 4401, the page asks.
  await page.goto(`${stack.baseUrl}?project=${project}`);
  const prompt = page.getByTestId('token-prompt');
  await expect(prompt).toBeVisible();
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'stopped');
  await expect(page.getByTestId('connection-stop-reason')).toContainText('4401');

  // A wrong token: refused, asked again.
  await enterToken(page, 'not-a-token');
  await expect(page.getByTestId('token-prompt-reason')).toContainText('refused the token');

  // The reader token: the page loads its stats and follows the stream.
  await enterToken(page, READER);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'open');
  await expect(prompt).toBeHidden();
  const writer = new TestApi(stack.apiUrl, project, OPERATOR);
  await writer.createNode('auth:a', 'alpha');
  await expect(page.getByTestId('change-count')).toHaveAttribute('data-value', '1');

  // The gateway was offered codegraph.v1 and the token as base64url, and selected codegraph.v1 only.
  const accepted = handshakes.filter((h) => h.response?.status === 101 && h.request['sec-websocket-protocol']);
  const last = accepted.at(-1);
  expect(last, 'a WebSocket handshake with subprotocols').toBeDefined();
  const encoded = Buffer.from(READER, 'utf8').toString('base64url');
  expect(last!.request['sec-websocket-protocol']).toBe(`codegraph.v1, codegraph.bearer.${encoded}`);
  expect(last!.response!.headers['sec-websocket-protocol']).toBe('codegraph.v1');
  expect(last!.request.authorization, 'no header a browser could not send').toBeUndefined();

  // graph-api got it as a header; no URL the page asked for carries it.
  expect(authorizations).toContain(`Bearer ${READER}`);
  for (const url of urls) {
    expect(url, 'a token in a URL').not.toContain(READER);
    expect(url).not.toContain('not-a-token');
    expect(new URL(url).searchParams.has('token'), url).toBe(false);
  }
  // This tab only: sessionStorage, never localStorage.
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem('codegraph.token'),
    local: localStorage.getItem('codegraph.token'),
  }));
  expect(stored).toEqual({ session: READER, local: null });
});

test('a read-only token may not start an analysis; a write token may', async ({ page, stack }) => {
  const project = `e2e-auth-${randomUUID().slice(0, 8)}`;
  const posts: Array<{ url: string; contentType: string | undefined; body: string | null }> = [];
  page.on('request', (r) => {
    if (r.method() === 'POST') posts.push({ url: r.url(), contentType: r.headers()['content-type'], body: r.postData() });
  });
  await page.goto(`${stack.baseUrl}?project=${project}`);
  await enterToken(page, READER);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'open');

  await page.getByTestId('reanalyze-path').fill(stack.fixturesDir);
  await page.getByTestId('reanalyze-button').click();
  await expect(page.getByTestId('reanalyze-error')).toContainText('may not start analyses');
  await expect(page.getByTestId('token-prompt'), 'a token without the scope is not a missing token').toBeHidden();

  // The operator's token, entered in a fresh tab state: the same POST is accepted.
  await page.evaluate(() => sessionStorage.removeItem('codegraph.token'));
  await page.reload();
  await enterToken(page, OPERATOR);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'open');
  await page.getByTestId('reanalyze-path').fill(stack.fixturesDir);
  await page.getByTestId('reanalyze-button').click();
  await expect(page.getByTestId('reanalyze-job')).toBeVisible();

  // Every POST the dashboard made was JSON (what graph-api's CSRF rule requires).
  expect(posts.length).toBeGreaterThanOrEqual(2);
  for (const p of posts) {
    expect(p.contentType, p.url).toBe('application/json');
    expect(() => JSON.parse(p.body ?? ''), p.url).not.toThrow();
  }
});
