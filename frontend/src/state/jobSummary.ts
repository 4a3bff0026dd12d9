/**
 * What the line under the analysis form says about a job, and the short list of a project's recent jobs (their
 * ids kept in the browser, per project, so a reload or a switch to a new project still follows them).
 */
import { duration } from '../composables/useNow';
import type { JobView } from './analysisJobs';

/** "12.5 files/s", "0.4 files/s". */
export function rateText(rate: number): string {
  return `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)} files/s`;
}

/** "about 8 s left", "about 3 min 05 s left"; a few seconds or less: "a moment left". */
export function timeLeftText(ms: number): string {
  return ms < 1500 ? 'a moment left' : `about ${duration(ms)} left`;
}

/**
 * The estimate counted down since the last progress event (`now` on the event clock of the page), never below
 * zero.
 */
export function etaNow(job: JobView, now: number): number | null {
  if (job.etaMs === null || job.progressAt === null) return null;
  return Math.max(0, job.etaMs - Math.max(0, now - job.progressAt));
}

/** Progress of a running job: "42% · 84 / 200 files · 12 files/s · about 9 s left". */
export function progressText(job: JobView, now: number): string {
  const parts = [`${Math.floor(job.percent)}%`];
  if (job.totalFiles > 0) parts.push(`${job.filesDone} / ${job.totalFiles} files`);
  if (job.filesPerSecond !== null) parts.push(rateText(job.filesPerSecond));
  const eta = etaNow(job, now);
  if (eta !== null && job.percent < 100) parts.push(timeLeftText(eta));
  return parts.join(' · ');
}

/** The whole line: queued, running with its progress, completed with counts and duration, failed with why. */
export function jobStatusLine(job: JobView, now: number): string {
  const name = `Job ${job.jobId.slice(0, 8)}`;
  switch (job.status) {
    case 'queued':
      return `${name} queued`;
    case 'running':
      return `${name} running: ${progressText(job, now)}`;
    case 'cancelling':
      return `${name} cancelling…`;
    case 'completed': {
      const r = job.result;
      const ms = r?.duration_ms ?? (job.endedAt ?? now) - job.startedAt;
      const exact = ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : duration(ms);
      if (!r) return `${name} completed in ${exact}`;
      return (
        `${name} completed in ${exact}: ${r.files} files, ${r.nodes} nodes, ${r.relationships} relationships` +
        (r.errors ? `, ${r.errors} errors` : '')
      );
    }
    case 'failed':
      return `${name} failed: ${job.error ?? 'unknown error'}`;
    case 'cancelled':
      return `${name} cancelled`;
  }
}

/** How many job ids are kept per project. */
export const RECENT_JOBS = 5;

const key = (project: string) => `codegraph.jobs.${project}`;

/** The project's recent job ids, newest first. */
export function recentJobIds(storage: Pick<Storage, 'getItem'>, project: string): string[] {
  try {
    const v = JSON.parse(storage.getItem(key(project)) ?? '[]') as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string').slice(0, RECENT_JOBS) : [];
  } catch {
    return [];
  }
}

/** Puts `jobId` first in the project's list (once), keeping RECENT_JOBS. */
export function rememberJob(storage: Pick<Storage, 'getItem' | 'setItem'>, project: string, jobId: string): string[] {
  const ids = [jobId, ...recentJobIds(storage, project).filter((id) => id !== jobId)].slice(0, RECENT_JOBS);
  try {
    storage.setItem(key(project), JSON.stringify(ids));
  } catch {
    // Storage full or refused: the list just is not kept across reloads.
  }
  return ids;
}

/** The jobs to list: those with ids in `ids` (kept order) then others the page saw, newest first, at most `max`. */
export function recentJobs(jobs: JobView[], ids: string[], max = RECENT_JOBS): JobView[] {
  const byId = new Map(jobs.map((j) => [j.jobId, j]));
  const seen = [...jobs].sort((a, b) => b.startedAt - a.startedAt);
  const out: JobView[] = [];
  for (const j of [...ids.map((id) => byId.get(id)), ...seen]) {
    if (j && !out.includes(j)) out.push(j);
  }
  return out.slice(0, max);
}
