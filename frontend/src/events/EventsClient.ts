/**
 * The dashboard's one connection to ws-gateway (`/ws/events?project=<p>`), free of Vue so it can be unit-tested.
 *
 * What it guarantees to the rest of the page:
 * - every stream entry of the project (one frame: a change set or a single event, read by decodeEntry) is delivered
 *   once, whole, in the order it arrives, across any number of reconnects: it resumes with `?since=<last entry id>`
 *   and drops duplicates by entry ID (see StreamCursor);
 * - it comes back by itself: exponential backoff with jitter after a failure, at once after a drain (1012) or a
 *   "too slow" close (4008), at once when the browser says it is online again;
 * - when the gap cannot be replayed (close 4009 or a `resync_required` message) it loads a snapshot, hands it to
 *   `onResync` listeners and resumes from the snapshot's `since`;
 * - a 44xx close means the server refuses us: it stops and says why instead of hammering the server;
 * - the access token, when there is one, goes in the `Sec-WebSocket-Protocol` offer (`codegraph.v1,
 *   codegraph.bearer.<base64url>`), never in the URL, where proxies and browser history would keep it;
 * - a keep-alive `{"type":"ping"}` every 30 s; a missing `pong` means a dead connection, which is replaced.
 */
import { bearerSubprotocols } from '../api/accessToken';
import type { Snapshot } from '../api/types';
import { DEFAULT_BACKOFF, backoffDelay, type BackoffOptions } from './backoff';
import { decodeEntry, type StreamEntry } from './envelope';
import { StreamCursor, type StreamId } from './streamId';

/** The part of the browser's WebSocket this client uses (a fake in tests). */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** The browser's idea of being online (`navigator.onLine` and the `online`/`offline` events). */
export interface NetworkSignals {
  isOnline(): boolean;
  watch(onOnline: () => void, onOffline: () => void): () => void;
}

export type ConnectionState =
  /** A socket is being opened. */
  | 'connecting'
  | 'open'
  /** Disconnected; a retry is scheduled (`retryAt`) or waits for the browser to be online. */
  | 'waiting'
  /** Loading a snapshot before resuming. */
  | 'resyncing'
  /** The server refused us (44xx); no retry. `stopReason` says why. */
  | 'stopped'
  /** Closed by the page. */
  | 'closed';

export interface ConnectionStatus {
  state: ConnectionState;
  /** Failed attempts since the last stable connection. */
  attempt: number;
  /** When the next retry fires (epoch ms), or null. */
  retryAt: number | null;
  lastClose: { code: number; reason: string } | null;
  stopReason: string | null;
  /** The last `error` message the server sent. */
  lastError: { code: string; message: string } | null;
  browserOnline: boolean;
  lastEventId: StreamId | null;
  /** Frames (stream entries) delivered; duplicates not counted. */
  frameCount: number;
  /** Changes in the delivered frames (a single event counts as one). */
  changeCount: number;
  /** Frames dropped because their entry was already delivered. */
  duplicates: number;
  lastEventAt: number | null;
  /** Round trip of the last answered ping, in ms. */
  lastRttMs: number | null;
  /** Snapshots loaded because the stream could not fill a gap. */
  resyncs: number;
}

export interface EventsClientOptions {
  /** Endpoint without query, e.g. `ws://host/ws/events`. */
  url: string;
  project: string;
  /** Resume point to start from; null starts with live events. */
  since?: StreamId | null;
  /** Access token for a gateway that requires one (offered as a subprotocol, see `bearerSubprotocols`). */
  token?: () => string | null;
  /** Loads a whole snapshot for a resync. */
  loadSnapshot: () => Promise<Snapshot>;
  createSocket?: (url: string, protocols: string[]) => SocketLike;
  network?: NetworkSignals;
  backoff?: BackoffOptions;
  random?: () => number;
  now?: () => number;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** A connection that lived this long resets the backoff. */
  stableAfterMs?: number;
}

type EntryHandler = (entry: StreamEntry) => void;

interface PendingPing {
  sentAt: number;
  resolve: (rttMs: number) => void;
  reject: (error: Error) => void;
}

/** Close codes of the WebSocket protocol (docs/DESIGN.md, "WebSocket surface"). */
export const CloseCode = {
  normal: 1000,
  serviceRestart: 1012,
  tooSlow: 4008,
  resyncRequired: 4009,
  /** Used by this client when it drops a socket it no longer trusts. */
  clientGiveUp: 4000,
} as const;

function isRefusal(code: number): boolean {
  return code >= 4400 && code <= 4499;
}

function reconnectsAtOnce(code: number): boolean {
  return code === CloseCode.serviceRestart || code === CloseCode.tooSlow;
}

export const browserNetwork: NetworkSignals = {
  isOnline: () => (typeof navigator === 'undefined' ? true : navigator.onLine !== false),
  watch(onOnline, onOffline) {
    if (typeof window === 'undefined') return () => {};
    window.addEventListener('online', onOnline);
    window.addEventListener('offline', onOffline);
    return () => {
      window.removeEventListener('online', onOnline);
      window.removeEventListener('offline', onOffline);
    };
  },
};

export class EventsClient {
  readonly project: string;
  private readonly opts: Required<Omit<EventsClientOptions, 'since'>>;
  private readonly cursor: StreamCursor;
  private socket: SocketLike | null = null;
  private openedAt: number | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pongDeadline: ReturnType<typeof setTimeout> | null = null;
  private pendingPings: PendingPing[] = [];
  private resyncInFlight = false;
  /** A resync failed: the next connect must load a snapshot first. */
  private needsResync = false;
  private unwatchNetwork: (() => void) | null = null;
  private readonly entryHandlers = new Set<EntryHandler>();
  private readonly statusHandlers = new Set<(s: ConnectionStatus) => void>();
  private readonly resyncHandlers = new Set<(s: Snapshot) => void>();
  private statusValue: ConnectionStatus;

  constructor(options: EventsClientOptions) {
    this.project = options.project;
    // An option given as `undefined` keeps its default.
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.opts = {
      createSocket: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
      network: browserNetwork,
      backoff: DEFAULT_BACKOFF,
      random: Math.random,
      now: Date.now,
      pingIntervalMs: 30_000,
      pongTimeoutMs: 10_000,
      stableAfterMs: 5_000,
      token: () => null,
      ...(given as unknown as EventsClientOptions),
    };
    this.cursor = new StreamCursor(options.since ?? null);
    this.statusValue = {
      state: 'closed',
      attempt: 0,
      retryAt: null,
      lastClose: null,
      stopReason: null,
      lastError: null,
      browserOnline: this.opts.network.isOnline(),
      lastEventId: this.cursor.last,
      frameCount: 0,
      changeCount: 0,
      duplicates: 0,
      lastEventAt: null,
      lastRttMs: null,
      resyncs: 0,
    };
  }

  get status(): ConnectionStatus {
    return this.statusValue;
  }

  /** Subscribes to every stream entry, each handed over whole. Returns the unsubscribe function. */
  onEntry(handler: EntryHandler): () => void {
    this.entryHandlers.add(handler);
    return () => this.entryHandlers.delete(handler);
  }

  onStatus(handler: (s: ConnectionStatus) => void): () => void {
    this.statusHandlers.add(handler);
    handler(this.statusValue);
    return () => this.statusHandlers.delete(handler);
  }

  /** Called with a whole snapshot after a resync; the graph state should be replaced by it. */
  onResync(handler: (s: Snapshot) => void): () => void {
    this.resyncHandlers.add(handler);
    return () => this.resyncHandlers.delete(handler);
  }

  start(): void {
    if (this.unwatchNetwork) return;
    this.unwatchNetwork = this.opts.network.watch(
      () => this.handleBrowserOnline(),
      () => this.handleBrowserOffline(),
    );
    this.connect();
  }

  /** Closes for good (the page switches project or unloads). */
  stop(): void {
    this.unwatchNetwork?.();
    this.unwatchNetwork = null;
    this.clearRetry();
    this.dropSocket(CloseCode.normal, 'client closed');
    this.update({ state: 'closed', retryAt: null });
  }

  /**
   * Makes sure a later (re)connect does not start before `id`: the page read a state consistent with `id` (the
   * stats' `last_event_id`) while it had no resume point of its own.
   */
  adoptResumePoint(id: StreamId | null): void {
    if (id === null) return;
    if (this.cursor.adopt(id)) this.update({ lastEventId: this.cursor.last });
  }

  /** Sends `{"type":"ping"}` and resolves with the round trip in ms once the `pong` arrives. */
  ping(): Promise<number> {
    const socket = this.socket;
    if (!socket || this.statusValue.state !== 'open') return Promise.reject(new Error('not connected'));
    return new Promise<number>((resolve, reject) => {
      this.pendingPings.push({ sentAt: this.opts.now(), resolve, reject });
      this.armPongDeadline();
      try {
        socket.send(JSON.stringify({ type: 'ping' }));
      } catch (e) {
        this.replaceDeadSocket('send failed');
      }
    });
  }

  /** Skips a pending retry delay (the page's "retry now"). */
  reconnectNow(): void {
    if (this.statusValue.state !== 'waiting') return;
    this.clearRetry();
    this.connect();
  }

  private connect(): void {
    this.clearRetry();
    if (!this.opts.network.isOnline()) {
      this.update({ state: 'waiting', retryAt: null, browserOnline: false });
      return;
    }
    if (this.needsResync) {
      void this.resync();
      return;
    }
    const params = new URLSearchParams({ project: this.project });
    if (this.cursor.last !== null) params.set('since', this.cursor.last);
    const socket = this.opts.createSocket(`${this.opts.url}?${params}`, bearerSubprotocols(this.opts.token()));
    this.socket = socket;
    this.openedAt = null;
    this.update({ state: 'connecting', retryAt: null });

    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.openedAt = this.opts.now();
      this.update({ state: 'open', stopReason: null });
      this.pingTimer = setInterval(() => this.keepAlive(), this.opts.pingIntervalMs);
    };
    socket.onmessage = (ev) => {
      if (socket === this.socket) this.handleMessage(ev.data);
    };
    socket.onerror = () => {
      // Always followed by a close event, which decides what to do.
    };
    socket.onclose = (ev) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.handleClose(ev.code, ev.reason ?? '');
    };
  }

  private handleMessage(raw: unknown): void {
    if (typeof raw !== 'string') return;
    let msg: unknown;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const type = (msg as { type?: unknown }).type;
    if (type === 'pong') return this.handlePong();
    if (type === 'resync_required') return void this.resync();
    if (type === 'error') {
      const m = msg as { code?: unknown; message?: unknown };
      this.update({ lastError: { code: String(m.code ?? 'error'), message: String(m.message ?? '') } });
      return;
    }
    const entry = decodeEntry(msg);
    if (entry === null || entry.project !== this.project) return;
    if (!this.cursor.accept(entry.id)) {
      this.update({ duplicates: this.statusValue.duplicates + 1 });
      return;
    }
    this.update({
      frameCount: this.statusValue.frameCount + 1,
      changeCount: this.statusValue.changeCount + entry.changes.length,
      lastEventAt: this.opts.now(),
      lastEventId: this.cursor.last,
    });
    this.dispatch(entry);
  }

  private dispatch(entry: StreamEntry): void {
    for (const handler of [...this.entryHandlers]) {
      try {
        handler(entry);
      } catch (e) {
        console.error(`handler of entry ${entry.id} failed`, e);
      }
    }
  }

  private handleClose(code: number, reason: string): void {
    this.stopKeepAlive(new Error(`connection closed (${code})`));
    const lived = this.openedAt === null ? 0 : this.opts.now() - this.openedAt;
    const attempt = lived >= this.opts.stableAfterMs ? 0 : this.statusValue.attempt;
    this.update({ lastClose: { code, reason }, attempt });
    if (isRefusal(code)) {
      this.update({
        state: 'stopped',
        retryAt: null,
        stopReason: reason ? `${reason} (close code ${code})` : `the server refused the connection (close code ${code})`,
      });
      return;
    }
    if (code === CloseCode.resyncRequired) {
      void this.resync();
      return;
    }
    this.scheduleReconnect(reconnectsAtOnce(code));
  }

  /** Retries after the backoff delay; `atOnce` skips the delay unless we are already retrying in a loop. */
  private scheduleReconnect(atOnce: boolean): void {
    this.clearRetry();
    const attempt = this.statusValue.attempt;
    const delay = atOnce && attempt === 0 ? 0 : backoffDelay(attempt, this.opts.backoff, this.opts.random);
    if (!this.opts.network.isOnline()) {
      this.update({ state: 'waiting', retryAt: null, attempt: attempt + 1, browserOnline: false });
      return;
    }
    this.update({ state: 'waiting', retryAt: this.opts.now() + delay, attempt: attempt + 1 });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private async resync(): Promise<void> {
    if (this.resyncInFlight || this.statusValue.state === 'closed') return;
    this.resyncInFlight = true;
    this.clearRetry();
    this.dropSocket(CloseCode.normal, 'resync');
    this.update({ state: 'resyncing', retryAt: null });
    let snapshot: Snapshot | null = null;
    try {
      snapshot = await this.opts.loadSnapshot();
    } catch (e) {
      this.update({ lastError: { code: 'snapshot_failed', message: String((e as Error)?.message ?? e) } });
    } finally {
      this.resyncInFlight = false;
    }
    if (this.statusValue.state !== 'resyncing') return; // stopped meanwhile
    if (snapshot === null) {
      this.needsResync = true;
      this.scheduleReconnect(false);
      return;
    }
    this.needsResync = false;
    this.cursor.reset(snapshot.since);
    this.update({ lastEventId: this.cursor.last, resyncs: this.statusValue.resyncs + 1 });
    for (const handler of [...this.resyncHandlers]) {
      try {
        handler(snapshot);
      } catch (e) {
        console.error('resync handler failed', e);
      }
    }
    this.connect();
  }

  private handleBrowserOnline(): void {
    this.update({ browserOnline: true });
    if (this.statusValue.state === 'waiting') {
      this.clearRetry();
      this.connect();
    }
  }

  private handleBrowserOffline(): void {
    this.update({ browserOnline: false });
    // A socket may linger half-open for minutes after the network is gone: stop trusting it now and resume when
    // the browser is back online.
    if (this.statusValue.state === 'open' || this.statusValue.state === 'connecting') {
      this.dropSocket(CloseCode.clientGiveUp, 'browser offline');
      this.update({ state: 'waiting', retryAt: null });
    }
  }

  private keepAlive(): void {
    this.ping().catch(() => {
      // A failed keep-alive is handled by the pong deadline or the close event.
    });
  }

  private handlePong(): void {
    const pending = this.pendingPings.shift();
    if (this.pendingPings.length === 0) this.clearPongDeadline();
    if (!pending) return;
    const rtt = Math.max(0, this.opts.now() - pending.sentAt);
    this.update({ lastRttMs: rtt });
    pending.resolve(rtt);
  }

  private armPongDeadline(): void {
    if (this.pongDeadline !== null) return;
    this.pongDeadline = setTimeout(() => {
      this.pongDeadline = null;
      this.replaceDeadSocket('no pong');
    }, this.opts.pongTimeoutMs);
  }

  private clearPongDeadline(): void {
    if (this.pongDeadline !== null) clearTimeout(this.pongDeadline);
    this.pongDeadline = null;
  }

  /** The socket stopped answering: drop it and reconnect as after any failure. */
  private replaceDeadSocket(reason: string): void {
    if (!this.socket) return;
    this.dropSocket(CloseCode.clientGiveUp, reason);
    this.scheduleReconnect(false);
  }

  /** Forgets the current socket (its late events are ignored) and closes it. */
  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    this.stopKeepAlive(new Error(reason));
    if (!socket) return;
    this.update({ lastClose: { code, reason } });
    try {
      socket.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  private stopKeepAlive(error: Error): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.clearPongDeadline();
    const pending = this.pendingPings;
    this.pendingPings = [];
    for (const p of pending) p.reject(error);
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private update(patch: Partial<ConnectionStatus>): void {
    this.statusValue = { ...this.statusValue, ...patch };
    for (const handler of [...this.statusHandlers]) handler(this.statusValue);
  }
}
