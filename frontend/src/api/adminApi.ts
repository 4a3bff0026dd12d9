/**
 * The admin routes the analysis form uses beyond Re-analyze: a project's recent jobs, one job's record, and watching a project's folder
 * (`/api/graph/admin/watch`: POST to start or move, DELETE to stop, GET the status). Any project can be named,
 * so the form can start the first analysis of a project that does not exist yet.
 */
import type { AnalysisMode } from './types';
import { request } from './GraphApi';
import type { JobRecord } from '../state/analysisJobs';

/** What graph-api says about a project's watch. */
export interface WatchStatus {
  project: string;
  watching: boolean;
  path: string | null;
  requested_ms: number | null;
  /** off, waiting (no worker holds it yet), catching_up, watching, failed. */
  state: string;
  holder: { worker: string; generation: number; since_ms: number } | null;
  last_change_ms: number | null;
  last_change_files: string[];
  pending_changes: number;
  last_run: {
    job_id: string;
    outcome: string;
    changed_files: number;
    duration_ms: number;
    finished_ms: number;
    error: string | null;
  } | null;
  error: string | null;
}

export function startAnalysis(project: string, path: string, mode: AnalysisMode): Promise<{ job_id: string }> {
  return request('/admin/reanalyze', { project }, { method: 'POST', body: JSON.stringify({ path, mode }) });
}

export function jobRecord(jobId: string): Promise<JobRecord> {
  return request(`/admin/jobs/${encodeURIComponent(jobId)}`, {});
}

/** The project's recent jobs, newest first, whoever started them (`GET /api/graph/admin/jobs`). */
export function projectJobs(project: string, limit: number): Promise<{ project: string; jobs: JobRecord[] }> {
  return request('/admin/jobs', { project, limit });
}

/**
 * The records of a project's recent jobs: the listing, and those of `remembered` (ids this browser started) it
 * does not hold, read one by one — all of them that way from a graph-api without the listing. A record that
 * cannot be read is left out.
 */
export async function recentJobRecords(
  project: string,
  remembered: string[],
  limit: number,
  read: { list: typeof projectJobs; one: typeof jobRecord } = { list: projectJobs, one: jobRecord },
): Promise<JobRecord[]> {
  const listed = await read.list(project, limit).then(
    (r) => r.jobs,
    () => [] as JobRecord[],
  );
  const missing = remembered.filter((id) => !listed.some((j) => j.job_id === id));
  const more = await Promise.all(missing.map((id) => read.one(id).catch(() => null)));
  return [...listed, ...more.filter((r): r is JobRecord => r !== null)];
}

export function watchStatus(project: string): Promise<WatchStatus> {
  return request('/admin/watch', { project });
}

export function startWatch(project: string, path: string): Promise<WatchStatus> {
  return request('/admin/watch', { project }, { method: 'POST', body: JSON.stringify({ path }) });
}

export function stopWatch(project: string): Promise<WatchStatus> {
  return request('/admin/watch', { project }, { method: 'DELETE' });
}

/** The runs of a watch (its catch-up, then one per burst of edits) have job ids `watch-<session>-<run>`. */
export function isWatchJob(jobId: string): boolean {
  return jobId.startsWith('watch-');
}

/** The state in words: "watching /repo", "catching up on /repo", "waiting for a worker", "off". */
export function watchStateText(w: WatchStatus | null): string {
  if (!w || !w.watching) return 'not watched';
  const at = w.path ?? '';
  switch (w.state) {
    case 'watching':
      return `watching ${at}`;
    case 'catching_up':
      return `catching up on ${at}`;
    case 'waiting':
      return `waiting for a worker to watch ${at}`;
    case 'failed':
      return `cannot watch ${at}: ${w.error ?? 'unknown error'}`;
    default:
      return `${w.state} ${at}`;
  }
}
