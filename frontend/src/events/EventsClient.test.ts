import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Snapshot } from '../api/types';
import type { StreamEntry } from './envelope';
import { EventsClient, type NetworkSignals, type SocketLike } from './EventsClient';

/** A socket the test drives by hand: it records what the client sends and plays the server's part. */
class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: string[] = [];
  closedWith: { code?: number; reason?: string } | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string[] = [],
  ) {}

  get query(): URLSearchParams {
    return new URL(this.url).searchParams;
  }
  open(): void {
    this.onopen?.({});
  }
  receive(msg: unknown): void {
    this.onmessage?.({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) });
  }
  serverClose(code: number, reason = ''): void {
    this.onclose?.({ code, reason });
  }
  send(data: string): void {
    this.sent.push(data);
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
  }
}

class FakeNetwork implements NetworkSignals {
  online = true;
  private listeners: Array<[() => void, () => void]> = [];
  isOnline(): boolean {
    return this.online;
  }
  watch(onOnline: () => void, onOffline: () => void): () => void {
    const entry: [() => void, () => void] = [onOnline, onOffline];
    this.listeners.push(entry);
    return () => (this.listeners = this.listeners.filter((l) => l !== entry));
  }
  set(online: boolean): void {
    this.online = online;
    for (const [on, off] of this.listeners) (online ? on : off)();
  }
}

/** A frame in the single-event form (job events, graph_reset, streams written before change sets). */
function event(id: string, type = 'node_added', project = 'default') {
  return {
    id,
    project,
    type,
    entity: { kind: 'node', id: `n${id}` },
    version: 1,
    data: { id: `n${id}`, kind: 'function', name: `f${id}` },
    ts: '2026-11-27T00:00:00.000Z',
  };
}

/** A change-set frame adding `nodes` nodes. */
function changeSet(id: string, nodes: number, project = 'default') {
  const changes = Array.from({ length: nodes }, (_, i) => ({
    type: 'node_added',
    entity: { kind: 'node', id: `n${id}.${i}` },
    version: 1,
    data: { id: `n${id}.${i}`, kind: 'function', name: `f${i}` },
  }));
  return { id, project, type: 'change_set', changes, ts: '2026-11-27T00:00:00.000Z' };
}

interface Harness {
  client: EventsClient;
  sockets: FakeSocket[];
  network: FakeNetwork;
  received: string[];
  entries: StreamEntry[];
  snapshots: Snapshot[];
  loadSnapshot: ReturnType<typeof vi.fn>;
  last(): FakeSocket;
}

function harness(
  overrides: { snapshot?: () => Promise<Snapshot>; random?: () => number; token?: () => string | null } = {},
): Harness {
  const sockets: FakeSocket[] = [];
  const network = new FakeNetwork();
  const loadSnapshot = vi.fn(
    overrides.snapshot ?? (async () => ({ since: '5000-0', nodes: [], relationships: [] }) as Snapshot),
  );
  const client = new EventsClient({
    url: 'ws://dash.test/ws/events',
    project: 'default',
    loadSnapshot,
    network,
    createSocket: (url, protocols) => {
      const s = new FakeSocket(url, protocols);
      sockets.push(s);
      return s;
    },
    random: overrides.random ?? (() => 0.5),
    token: overrides.token,
    backoff: { baseMs: 1000, maxMs: 16_000, factor: 2 },
  });
  const received: string[] = [];
  const entries: StreamEntry[] = [];
  const snapshots: Snapshot[] = [];
  client.onEntry((e) => {
    received.push(e.id);
    entries.push(e);
  });
  client.onResync((s) => snapshots.push(s));
  return {
    client,
    sockets,
    network,
    received,
    entries,
    snapshots,
    loadSnapshot,
    last: () => sockets[sockets.length - 1],
  };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2026-11-27T00:00:00Z'));
});
afterEach(() => {
  vi.useRealTimers();
});

describe('EventsClient connection', () => {
  it('connects to /ws/events with the project and no since on page load', () => {
    const h = harness();
    h.client.start();
    expect(h.sockets).toHaveLength(1);
    expect(h.last().url).toBe('ws://dash.test/ws/events?project=default');
    expect(h.client.status.state).toBe('connecting');
    h.last().open();
    expect(h.client.status.state).toBe('open');
  });

  it('delivers each frame whole as one entry, in both forms, and counts frames and changes', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(changeSet('1-0', 3));
    h.last().receive(event('2-0', 'analysis_progress'));
    h.last().receive(event('3-0', 'relationship_added'));
    expect(h.received).toEqual(['1-0', '2-0', '3-0']);
    expect(h.entries.map((e) => [e.isChangeSet, e.changes.length])).toEqual([
      [true, 3],
      [false, 1],
      [false, 1],
    ]);
    expect(h.entries[0].changes.map((c) => `${c.id}#${c.index}`)).toEqual(['1-0#0', '1-0#1', '1-0#2']);
    expect(h.client.status).toMatchObject({ frameCount: 3, changeCount: 5, lastEventId: '3-0' });
  });

  it('offers the access token as a subprotocol, never in the URL', () => {
    let token: string | null = 's3cret';
    const h = harness({ token: () => token });
    h.client.start();
    expect(h.last().query.has('token')).toBe(false);
    expect(h.last().url).not.toContain('s3cret');
    expect(h.last().protocols).toEqual(['codegraph.v1', 'codegraph.bearer.czNjcmV0']);
    // Each connection reads the token anew; without one nothing is offered.
    token = null;
    h.last().serverClose(1012);
    vi.advanceTimersByTime(0);
    expect(h.sockets).toHaveLength(2);
    expect(h.last().protocols).toEqual([]);
  });

  it('stops on 4401 (no or a refused token) and says why', () => {
    const h = harness({ token: () => 'wrong' });
    h.client.start();
    h.last().serverClose(4401, 'invalid token');
    expect(h.client.status).toMatchObject({ state: 'stopped', lastClose: { code: 4401 } });
    expect(h.client.status.stopReason).toContain('invalid token');
    vi.advanceTimersByTime(60_000);
    expect(h.sockets).toHaveLength(1);
  });

  it('ignores events of other projects, malformed messages and unknown control types', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(event('1-0', 'node_added', 'other'));
    h.last().receive('not json');
    h.last().receive({ type: 'something_new' });
    h.last().receive(changeSet('2-0', 1, 'other'));
    h.last().receive({ ...changeSet('3-0', 1), changes: 'not a list' });
    h.last().receive(event('4-0', 'type_from_the_future'));
    expect(h.received).toEqual(['4-0']);
    expect(h.client.status.lastEventId).toBe('4-0');
  });
});

describe('EventsClient resume and de-duplication', () => {
  it('resumes from the last event id after a reconnect', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(event('1700000000000-0'));
    h.last().receive(event('1700000000000-1'));
    h.last().serverClose(1006);
    vi.runOnlyPendingTimers();
    expect(h.sockets).toHaveLength(2);
    expect(h.last().query.get('since')).toBe('1700000000000-1');
  });

  it('delivers nothing twice and loses nothing across a reconnect that replays overlap', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    for (const id of ['10-0', '10-1', '11-0']) h.last().receive(event(id));
    h.last().serverClose(1006);
    vi.runOnlyPendingTimers();
    h.last().open();
    // The gateway replays from `since`, and a second copy of the live frame may arrive as well.
    for (const id of ['10-1', '11-0', '12-0', '12-0', '13-0']) h.last().receive(event(id));
    expect(h.received).toEqual(['10-0', '10-1', '11-0', '12-0', '13-0']);
    expect(h.client.status.frameCount).toBe(5);
    expect(h.client.status.duplicates).toBe(3);
  });

  it('resumes after a change set by its entry id, and drops a replayed set whole', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(changeSet('20-0', 4));
    h.last().receive(changeSet('21-0', 2));
    h.last().serverClose(1006);
    vi.runOnlyPendingTimers();
    expect(h.last().query.get('since')).toBe('21-0');
    h.last().open();
    h.last().receive(changeSet('21-0', 2));
    h.last().receive(changeSet('22-0', 3));
    expect(h.received).toEqual(['20-0', '21-0', '22-0']);
    expect(h.client.status).toMatchObject({ frameCount: 3, changeCount: 9, duplicates: 1 });
  });

  it('compares ids numerically part by part, not as strings', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(event('999-9'));
    h.last().receive(event('1000-0'));
    h.last().receive(event('1000-10'));
    h.last().receive(event('1000-9'));
    h.last().serverClose(1006);
    vi.runOnlyPendingTimers();
    expect(h.last().query.get('since')).toBe('1000-10');
    // 1000-9 arrived late but was new: it is delivered, not mistaken for a duplicate.
    expect(h.received).toEqual(['999-9', '1000-0', '1000-10', '1000-9']);
  });

  it('starts from an adopted resume point when it has seen nothing newer', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.client.adoptResumePoint('50-0');
    h.last().serverClose(1006);
    vi.runOnlyPendingTimers();
    expect(h.last().query.get('since')).toBe('50-0');
    h.last().open();
    h.last().receive(event('60-0'));
    h.client.adoptResumePoint('55-0');
    expect(h.client.status.lastEventId).toBe('60-0');
  });
});

describe('EventsClient backoff', () => {
  it('waits longer after each failed attempt, with jitter, up to the maximum', () => {
    const h = harness({ random: () => 0 });
    h.client.start();
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      h.last().serverClose(1006);
      const status = h.client.status;
      delays.push(status.retryAt! - Date.now());
      vi.advanceTimersByTime(delays[i] - 1);
      expect(h.sockets).toHaveLength(i + 1);
      vi.advanceTimersByTime(1);
      expect(h.sockets).toHaveLength(i + 2);
    }
    // random() = 0 gives the lower half of each step: 1000, 2000, 4000, 8000, 16000 (capped) halved.
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('spreads delays with jitter between half and all of the step', () => {
    const low = harness({ random: () => 0 });
    const high = harness({ random: () => 0.998 });
    for (const h of [low, high]) {
      h.client.start();
      h.last().serverClose(1006);
    }
    expect(low.client.status.retryAt! - Date.now()).toBe(500);
    expect(high.client.status.retryAt! - Date.now()).toBe(999);
  });

  it('resets the backoff after a connection that stayed up', () => {
    const h = harness({ random: () => 0 });
    h.client.start();
    h.last().serverClose(1006);
    vi.runOnlyPendingTimers();
    h.last().serverClose(1006);
    expect(h.client.status.attempt).toBe(2);
    vi.runOnlyPendingTimers();
    h.last().open();
    vi.advanceTimersByTime(6000);
    h.last().serverClose(1006);
    expect(h.client.status.retryAt! - Date.now()).toBe(500);
  });
});

describe('EventsClient close codes', () => {
  it.each([1012, 4008])('reconnects at once after close code %i and resumes', (code) => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(event('7-0'));
    vi.advanceTimersByTime(6000);
    h.last().serverClose(code);
    vi.advanceTimersByTime(0);
    expect(h.sockets).toHaveLength(2);
    expect(h.last().query.get('since')).toBe('7-0');
  });

  it('does not spin when 1012 closes come back to back', () => {
    const h = harness({ random: () => 0 });
    h.client.start();
    h.last().serverClose(1012);
    vi.advanceTimersByTime(0);
    expect(h.sockets).toHaveLength(2);
    h.last().serverClose(1012);
    vi.advanceTimersByTime(0);
    expect(h.sockets).toHaveLength(2);
    vi.advanceTimersByTime(1000);
    expect(h.sockets).toHaveLength(3);
  });

  it('stops and says why on a 44xx close', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().serverClose(4400, 'unknown project');
    vi.advanceTimersByTime(120_000);
    expect(h.sockets).toHaveLength(1);
    expect(h.client.status.state).toBe('stopped');
    expect(h.client.status.stopReason).toContain('unknown project');
    expect(h.client.status.stopReason).toContain('4400');
  });

  it('resyncs from a snapshot on close code 4009 and resumes from its since', async () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(event('1-0'));
    h.last().serverClose(4009, 'gap too old');
    expect(h.client.status.state).toBe('resyncing');
    await vi.waitFor(() => expect(h.snapshots).toHaveLength(1));
    expect(h.sockets).toHaveLength(2);
    expect(h.last().query.get('since')).toBe('5000-0');
    h.last().open();
    // Events up to the snapshot are part of it; later ones are delivered.
    h.last().receive(event('4000-0'));
    h.last().receive(event('5001-0'));
    expect(h.received).toEqual(['1-0', '5001-0']);
  });

  it('resyncs when the server sends resync_required', async () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive({ type: 'resync_required', reason: 'trimmed' });
    expect(h.last().closedWith).not.toBeNull();
    await vi.waitFor(() => expect(h.loadSnapshot).toHaveBeenCalledTimes(1));
    await vi.waitFor(() => expect(h.sockets).toHaveLength(2));
    expect(h.last().query.get('since')).toBe('5000-0');
    expect(h.client.status.resyncs).toBe(1);
    expect(h.client.status.lastClose).toEqual({ code: 1000, reason: 'resync' });
  });

  it('retries the snapshot with backoff when it cannot be loaded', async () => {
    let fail = true;
    const h = harness({
      snapshot: async () => {
        if (fail) throw new Error('graph-api down');
        return { since: '9-0', nodes: [], relationships: [] };
      },
    });
    h.client.start();
    h.last().open();
    h.last().serverClose(4009);
    await vi.waitFor(() => expect(h.client.status.state).toBe('waiting'));
    expect(h.client.status.lastError?.code).toBe('snapshot_failed');
    expect(h.sockets).toHaveLength(1);
    fail = false;
    await vi.runOnlyPendingTimersAsync();
    await vi.waitFor(() => expect(h.sockets).toHaveLength(2));
    expect(h.last().query.get('since')).toBe('9-0');
  });

  it('shows the server error messages without disconnecting', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive({ type: 'error', code: 'bad_message', message: 'unknown message type' });
    expect(h.client.status.lastError).toEqual({ code: 'bad_message', message: 'unknown message type' });
    expect(h.client.status.state).toBe('open');
  });
});

describe('EventsClient keep-alive and ping', () => {
  it('sends {"type":"ping"} every 30 s', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    vi.advanceTimersByTime(30_000);
    expect(h.last().sent).toEqual(['{"type":"ping"}']);
    h.last().receive({ type: 'pong' });
    vi.advanceTimersByTime(30_000);
    expect(h.last().sent).toHaveLength(2);
  });

  it('measures the round trip of a ping', async () => {
    const h = harness();
    h.client.start();
    h.last().open();
    const rtt = h.client.ping();
    vi.advanceTimersByTime(42);
    h.last().receive({ type: 'pong' });
    await expect(rtt).resolves.toBe(42);
    expect(h.client.status.lastRttMs).toBe(42);
  });

  it('replaces a connection that does not answer pings', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    vi.advanceTimersByTime(30_000 + 10_000);
    expect(h.sockets[0].closedWith).not.toBeNull();
    expect(h.client.status.state).toBe('waiting');
    vi.runOnlyPendingTimers();
    expect(h.sockets).toHaveLength(2);
  });

  it('rejects a ping when not connected', async () => {
    const h = harness();
    await expect(h.client.ping()).rejects.toThrow('not connected');
  });
});

describe('EventsClient and the browser network', () => {
  it('waits while offline and reconnects at once, resuming, when online again', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.last().receive(event('3-0'));
    h.network.set(false);
    expect(h.sockets[0].closedWith).not.toBeNull();
    expect(h.client.status.state).toBe('waiting');
    vi.advanceTimersByTime(60_000);
    expect(h.sockets).toHaveLength(1);
    h.network.set(true);
    expect(h.sockets).toHaveLength(2);
    expect(h.last().query.get('since')).toBe('3-0');
  });

  it('ignores what an abandoned socket says after it was replaced', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    const old = h.last();
    h.network.set(false);
    h.network.set(true);
    old.receive(event('1-0'));
    old.serverClose(1006);
    expect(h.received).toEqual([]);
    expect(h.client.status.state).toBe('connecting');
  });

  it('stops for good when the page closes it', () => {
    const h = harness();
    h.client.start();
    h.last().open();
    h.client.stop();
    vi.advanceTimersByTime(120_000);
    expect(h.sockets).toHaveLength(1);
    expect(h.client.status.state).toBe('closed');
  });
});
