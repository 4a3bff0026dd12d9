/**
 * The per-project dashboard session (one EventsClient, the live counts and the analysis jobs), provided by the
 * Dashboard to every component, and `useEvents()`, the composable components subscribe to stream entries with.
 */
import { inject, markRaw, onBeforeUnmount, provide, ref, shallowRef, type InjectionKey, type Ref, type ShallowRef } from 'vue';
import { frameRef } from '../composables/frameRef';
import { accessToken, reportUnauthorized } from '../api/accessToken';
import { GraphApi } from '../api/GraphApi';
import type { GraphStats, Snapshot } from '../api/types';
import { AnalysisJobs, type JobView } from '../state/analysisJobs';
import { LiveCounts, type Counts } from '../state/liveCounts';
import { backoffDelay } from './backoff';
import type { StreamEntry } from './envelope';
import { EventsClient, type ConnectionStatus } from './EventsClient';

export interface DashboardSession {
  project: string;
  api: GraphApi;
  client: EventsClient;
  status: ShallowRef<ConnectionStatus>;
  /** The live counts, a fresh object after every change; null until the stats were read. */
  counts: ShallowRef<Counts | null>;
  statsError: Ref<string | null>;
  jobs: AnalysisJobs;
  /** A copy of the jobs' views, replaced on every change. */
  jobViews: ShallowRef<JobView[]>;
  refreshJobs(): void;
  /** Resolves once the event stream is followed from a known position; graph pages read after it miss nothing. */
  started: Promise<void>;
  dispose(): void;
}

/** How long the page waits for the stats before connecting without them. */
const STATS_WAIT_MS = 3000;

const SESSION: InjectionKey<DashboardSession> = Symbol('dashboard-session');

function gatewayUrl(): string {
  const { protocol, host } = window.location;
  return `${protocol === 'https:' ? 'wss' : 'ws'}://${host}/ws/events`;
}

export function createSession(project: string): DashboardSession {
  const api = new GraphApi(project);
  const client = markRaw(
    new EventsClient({
      url: gatewayUrl(),
      project,
      token: accessToken,
      loadSnapshot: (): Promise<Snapshot> => api.snapshot(),
    }),
  );
  const status = frameRef(client.status);
  const live = new LiveCounts();
  const counts = frameRef<Counts | null>(null);
  const publishCounts = () =>
    counts.set(() => {
      const c = live.value;
      return live.hasBaseline
        ? { ...c, nodeKinds: { ...c.nodeKinds }, relationshipTypes: { ...c.relationshipTypes } }
        : null;
    });
  const statsError = ref<string | null>(null);
  const jobs = markRaw(new AnalysisJobs());
  const jobViews = shallowRef<JobView[]>([]);
  const refreshJobs = () => (jobViews.value = jobs.list().map((j) => ({ ...j })));
  let disposed = false;

  const offs = [
    client.onStatus((s) => {
      status.set(() => s);
      // 4401: no token, or one the gateway does not know; the page asks for one.
      if (s.state === 'stopped' && s.lastClose?.code === 4401) reportUnauthorized('ws-gateway', s.lastClose.reason || 'unauthorized');
    }),
    client.onEntry((entry) => {
      if (live.applyChanges(entry.changes)) publishCounts();
      let jobsChanged = false;
      for (const change of entry.changes) if (jobs.apply(change)) jobsChanged = true;
      if (jobsChanged) refreshJobs();
    }),
    client.onResync((snapshot) => {
      live.setFromSnapshot(snapshot);
      publishCounts();
    }),
  ];

  function applyStats(stats: GraphStats): void {
    live.setBaseline(stats);
    client.adoptResumePoint(stats.last_event_id);
    statsError.value = null;
    publishCounts();
  }

  async function loadStats(): Promise<void> {
    for (let attempt = 0; !disposed; attempt++) {
      try {
        const stats = await api.stats();
        if (!disposed) applyStats(stats);
        return;
      } catch (e) {
        statsError.value = (e as Error).message;
        await new Promise((r) => setTimeout(r, backoffDelay(attempt)));
      }
    }
  }

  /**
   * The stats come first when graph-api answers in time: the stream is then followed from exactly the position
   * the stats are consistent with (`?since=last_event_id`), so nothing falls between the two. Without them the
   * page still connects at once, and adopts their position as soon as they come.
   */
  async function start(): Promise<void> {
    const first = api.stats();
    const timeout = new Promise<null>((r) => setTimeout(() => r(null), STATS_WAIT_MS));
    const stats = await Promise.race([first, timeout]).catch((e: Error) => {
      statsError.value = e.message;
      return null;
    });
    if (disposed) return;
    if (stats) applyStats(stats);
    client.start();
    if (!stats) void loadStats();
  }

  const started = start();

  return {
    project,
    api,
    client,
    status: status.ref,
    counts: counts.ref,
    statsError,
    jobs,
    jobViews,
    refreshJobs,
    started,
    dispose() {
      disposed = true;
      status.cancel();
      counts.cancel();
      offs.forEach((off) => off());
      client.stop();
    },
  };
}

export function provideSession(session: DashboardSession): void {
  provide(SESSION, session);
}

export function useSession(): DashboardSession {
  const session = inject(SESSION);
  if (!session) throw new Error('useSession() outside of a Dashboard');
  return session;
}

/**
 * Subscribes the calling component to stream entries, each a whole change set or a single event (decoded by
 * decodeEntry); subscriptions end when it unmounts.
 */
export function useEvents() {
  const session = useSession();
  const offs: Array<() => void> = [];
  onBeforeUnmount(() => offs.splice(0).forEach((off) => off()));
  return {
    status: session.status,
    onEntry(handler: (entry: StreamEntry) => void): void {
      offs.push(session.client.onEntry(handler));
    },
    onResync(handler: (snapshot: Snapshot) => void): void {
      offs.push(session.client.onResync(handler));
    },
    ping: () => session.client.ping(),
    reconnectNow: () => session.client.reconnectNow(),
  };
}
