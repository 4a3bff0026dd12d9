/**
 * The per-project dashboard session (one EventsClient, the live counts and the analysis jobs), provided by the
 * Dashboard to every component, and `useEvents()`, the composable components subscribe to stream entries with.
 */
import { inject, markRaw, onBeforeUnmount, provide, ref, shallowRef, type InjectionKey, type Ref, type ShallowRef } from 'vue';
import { frameRef } from '../composables/frameRef';
import { accessToken, reportUnauthorized } from '../api/accessToken';
import { GraphApi } from '../api/GraphApi';
import { isWatchJob, recentJobRecords, watchStatus, type WatchStatus } from '../api/adminApi';
import type { GraphStats, Snapshot } from '../api/types';
import { AnalysisJobs, type JobView } from '../state/analysisJobs';
import { RECENT_JOBS, recentJobIds } from '../state/jobSummary';
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
  /** The project's watch as graph-api last said; null until read (or when the route is not there). */
  watch: ShallowRef<WatchStatus | null>;
  watchError: Ref<string | null>;
  /** Reads the watch status again (after a change of it, or when a watch run's events arrive). */
  refreshWatch(): void;
  /** Reads the records of the project's recent jobs (on load, and after the stream had to be re-read). */
  loadRecentJobs(): Promise<void>;
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
  const watch = shallowRef<WatchStatus | null>(null);
  const watchError = ref<string | null>(null);
  // One read at a time; a change noticed during a read asks for one more read after it.
  let watchReading = false;
  let watchAgain = false;
  // A watch run's events and the watch's state are written one after the other: a read right after the end of a
  // run can still see it catching up. A state on its way (waiting, catching up) is read again a few times, later
  // and later (0.25 s … 4 s), then left to the next run's events.
  let settleTimer: ReturnType<typeof setTimeout> | null = null;
  let settleTries = 0;
  function settleWatch(w: WatchStatus): void {
    if (settleTimer !== null) clearTimeout(settleTimer);
    settleTimer = null;
    if (!w.watching || (w.state !== 'waiting' && w.state !== 'catching_up') || settleTries >= 5) {
      settleTries = 0;
      return;
    }
    settleTimer = setTimeout(() => {
      settleTimer = null;
      void refreshWatch(true);
    }, 250 * 2 ** settleTries++);
  }
  async function refreshWatch(settling = false): Promise<void> {
    if (!settling) settleTries = 0;
    if (watchReading) {
      watchAgain = true;
      return;
    }
    watchReading = true;
    try {
      do {
        watchAgain = false;
        try {
          const w = await watchStatus(project);
          if (!disposed) {
            watch.value = w;
            watchError.value = null;
            settleWatch(w);
          }
        } catch (e) {
          if (!disposed) watchError.value = (e as Error).message;
        }
      } while (watchAgain && !disposed);
    } finally {
      watchReading = false;
    }
  }
  async function loadRecentJobs(): Promise<void> {
    const records = await recentJobRecords(project, recentJobIds(localStorage, project), RECENT_JOBS);
    if (disposed) return;
    for (const r of records) jobs.merge(r);
    refreshJobs();
  }
  let wasOpen = false;

  const offs = [
    client.onStatus((s) => {
      status.set(() => s);
      // Back after a break: what happened meanwhile to the jobs and the watch is read once.
      if (s.state === 'open' && wasOpen === false) {
        wasOpen = true;
        void loadRecentJobs();
        void refreshWatch();
      } else if (s.state !== 'open' && s.state !== 'resyncing') {
        wasOpen = false;
      }
      // 4401: no token, or one the gateway does not know; the page asks for one.
      if (s.state === 'stopped' && s.lastClose?.code === 4401) reportUnauthorized('ws-gateway', s.lastClose.reason || 'unauthorized');
    }),
    client.onEntry((entry) => {
      if (live.applyChanges(entry.changes)) publishCounts();
      let jobsChanged = false;
      let watchChanged = false;
      for (const change of entry.changes) {
        const job = jobs.apply(change);
        if (!job) continue;
        jobsChanged = true;
        // A watch run starting or ending changes the watch's state, last change and last run.
        if (isWatchJob(job.jobId) && change.type !== 'analysis_progress') watchChanged = true;
      }
      if (jobsChanged) refreshJobs();
      if (watchChanged) void refreshWatch();
    }),
    client.onResync((snapshot) => {
      live.setFromSnapshot(snapshot);
      publishCounts();
      // Events were lost: the jobs and the watch are read again.
      void loadRecentJobs();
      void refreshWatch();
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
    watch,
    watchError,
    refreshWatch: () => void refreshWatch(),
    loadRecentJobs,
    started,
    dispose() {
      disposed = true;
      if (settleTimer !== null) clearTimeout(settleTimer);
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
