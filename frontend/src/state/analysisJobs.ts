/**
 * What the dashboard knows about analysis jobs, folded from `analysis_*` events (and from the Re-analyze button,
 * which knows a job id before its first event).
 */
import type {
  AnalysisCompletedData,
  AnalysisFailedData,
  AnalysisProgressData,
  AnalysisStartedData,
  CdcEvent,
} from '../events/envelope';

export type JobStatus = 'queued' | 'running' | 'cancelling' | 'completed' | 'failed' | 'cancelled';

export interface JobView {
  jobId: string;
  status: JobStatus;
  percent: number;
  filesDone: number;
  totalFiles: number;
  currentFile: string;
  phase: string;
  path: string;
  mode: string;
  /** "python", or "python (151)" when the worker counts files per language. */
  languages: string[];
  /** Epoch ms when the job started (from the event time) and ended, for the elapsed time. */
  startedAt: number;
  endedAt: number | null;
  /**
   * When this page learned that the job ended (its own clock): a page that is behind on a burst of events still
   * shows the end for a moment.
   */
  endSeenAt: number | null;
  /** Newest last, at most MAX_MESSAGES. */
  messages: string[];
  result: AnalysisCompletedData | null;
  error: string | null;
}

const MAX_MESSAGES = 6;

export function isFinished(status: JobStatus): boolean {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

function eventTime(event: CdcEvent, now: number): number {
  const t = Date.parse(event.ts);
  return Number.isFinite(t) ? Math.min(t, now) : now;
}

function clampPercent(p: unknown, done: number, total: number): number {
  const n = typeof p === 'number' && Number.isFinite(p) ? p : total > 0 ? (100 * done) / total : 0;
  return Math.max(0, Math.min(100, n));
}

function languageList(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (value && typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>).map(([lang, files]) => `${lang} (${files})`);
  }
  return [];
}

function newJob(jobId: string, startedAt: number): JobView {
  return {
    jobId,
    status: 'queued',
    percent: 0,
    filesDone: 0,
    totalFiles: 0,
    currentFile: '',
    phase: '',
    path: '',
    mode: '',
    languages: [],
    startedAt,
    endedAt: null,
    endSeenAt: null,
    messages: [],
    result: null,
    error: null,
  };
}

function say(job: JobView, message: string): void {
  job.messages = [...job.messages, message].slice(-MAX_MESSAGES);
}

export class AnalysisJobs {
  private readonly jobs = new Map<string, JobView>();

  constructor(private readonly now: () => number = Date.now) {}

  list(): JobView[] {
    return [...this.jobs.values()];
  }

  get(jobId: string): JobView | undefined {
    return this.jobs.get(jobId);
  }

  /** The Re-analyze button got a job id back; show it before the worker picks it up. */
  queued(jobId: string, path: string, mode: string): JobView {
    const job = this.jobs.get(jobId) ?? newJob(jobId, this.now());
    if (job.status === 'queued') {
      job.path = path;
      job.mode = mode;
      if (job.messages.length === 0) say(job, `Queued: ${mode} analysis of ${path}`);
    }
    this.jobs.set(jobId, job);
    return job;
  }

  cancelling(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (job && !isFinished(job.status)) {
      job.status = 'cancelling';
      say(job, 'Cancel requested');
    }
  }

  /** Folds an analysis event in; returns the job it touched, or null for other events. */
  apply(event: CdcEvent): JobView | null {
    if (!event.type.startsWith('analysis_')) return null;
    const data = event.data as { job_id?: unknown };
    const jobId = typeof data.job_id === 'string' ? data.job_id : event.entity?.id;
    if (!jobId) return null;
    const at = eventTime(event, this.now());
    let job = this.jobs.get(jobId);
    if (!job) {
      job = newJob(jobId, at);
      this.jobs.set(jobId, job);
    }
    switch (event.type) {
      case 'analysis_started': {
        const d = event.data as unknown as AnalysisStartedData;
        job.status = job.status === 'cancelling' ? 'cancelling' : 'running';
        job.startedAt = at;
        job.totalFiles = d.total_files ?? 0;
        job.languages = languageList(d.languages);
        job.path = d.path ?? job.path;
        job.mode = d.mode ?? job.mode;
        const langs = job.languages.length ? ` (${job.languages.join(', ')})` : '';
        say(job, `Started ${job.mode} analysis of ${job.path}: ${job.totalFiles} files${langs}`);
        break;
      }
      case 'analysis_progress': {
        const d = event.data as unknown as AnalysisProgressData;
        if (isFinished(job.status)) break; // a late progress event after the end changes nothing
        if (job.status === 'queued') job.status = 'running';
        job.filesDone = d.files_done ?? job.filesDone;
        job.totalFiles = d.total_files ?? job.totalFiles;
        job.currentFile = d.current_file ?? job.currentFile;
        job.percent = clampPercent(d.percent, job.filesDone, job.totalFiles);
        if (d.phase && d.phase !== job.phase) say(job, `Phase: ${d.phase}`);
        job.phase = d.phase ?? job.phase;
        break;
      }
      case 'analysis_completed': {
        const d = event.data as unknown as AnalysisCompletedData;
        job.status = 'completed';
        job.endSeenAt = this.now();
        job.percent = 100;
        job.endedAt = at;
        job.result = d;
        job.filesDone = Math.max(job.filesDone, d.files ?? 0);
        say(
          job,
          `Completed in ${((d.duration_ms ?? at - job.startedAt) / 1000).toFixed(1)} s: ${d.nodes} nodes, ` +
            `${d.relationships} relationships, ${d.files} files, ${d.skipped} skipped, ${d.errors} errors`,
        );
        break;
      }
      case 'analysis_failed': {
        const d = event.data as unknown as AnalysisFailedData;
        job.status = 'failed';
        job.endSeenAt = this.now();
        job.endedAt = at;
        job.error = d.error ?? 'unknown error';
        say(job, `Failed: ${job.error}`);
        break;
      }
      case 'analysis_cancelled':
        job.status = 'cancelled';
        job.endSeenAt = this.now();
        job.endedAt = at;
        say(job, 'Cancelled');
        break;
      default:
        return null;
    }
    return job;
  }

  remove(jobId: string): void {
    this.jobs.delete(jobId);
  }
}
