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
  /** Files analysed per second lately (from the progress events' times), null until two samples tell. */
  filesPerSecond: number | null;
  /** Estimated time left (ms) at that rate, null when unknown. */
  etaMs: number | null;
  /** When the last progress event was written (event time), for counting the estimate down. */
  progressAt: number | null;
}

/**
 * A job as `GET /api/graph/admin/jobs/{id}` returns it: its status and the data of its latest event (progress,
 * the result, or the failure).
 */
export interface JobRecord {
  job_id: string;
  project?: string;
  path?: string | null;
  mode?: string | null;
  status: string;
  created_at?: string | null;
  updated_at?: string | null;
  last_event?: Record<string, unknown> | null;
}

/** The rate is measured over the progress of the last RATE_WINDOW_MS (event time). */
export const RATE_WINDOW_MS = 10_000;
/** Below this span between the first and the last sample the rate is not trusted. */
const MIN_RATE_SPAN_MS = 300;

export interface Sample {
  /** Event time (epoch ms). */
  at: number;
  files: number;
  total: number;
  percent: number;
}

/** The rate of `value` over the window ending at the last sample, or since the start; null when nothing tells. */
function rate(samples: Sample[], startedAt: number, value: (s: Sample) => number, windowMs: number): number | null {
  if (samples.length === 0) return null;
  const last = samples[samples.length - 1];
  const first = samples.find((s) => s.at >= last.at - windowMs) ?? last;
  if (first !== last && last.at - first.at >= MIN_RATE_SPAN_MS) {
    return Math.max(0, ((value(last) - value(first)) * 1000) / (last.at - first.at));
  }
  if (last.at - startedAt >= MIN_RATE_SPAN_MS && value(last) > 0) return (value(last) * 1000) / (last.at - startedAt);
  return null;
}

/**
 * Files per second from progress samples (oldest first), over the window that ends where the files last moved
 * (after the files are read, the later phases keep the count still: the rate stays the reading pace), or since
 * the start when that window holds a single sample. Null when nothing tells yet.
 */
export function filesPerSecond(samples: Sample[], startedAt: number, windowMs = RATE_WINDOW_MS): number | null {
  let end = samples.length;
  while (end > 1 && samples[end - 2].files === samples[end - 1].files) end -= 1;
  return rate(samples.slice(0, end), startedAt, (s) => s.files, windowMs);
}

/**
 * Time left (ms): the percent still to go at the pace the percent moved lately (it counts every phase, not only
 * the reading of files), else the files left at `filesRate`. Null when neither tells.
 */
export function timeLeftMs(
  samples: Sample[],
  startedAt: number,
  filesRate: number | null,
  windowMs = RATE_WINDOW_MS,
): number | null {
  const last = samples[samples.length - 1];
  if (!last) return null;
  const pace = rate(samples, startedAt, (s) => s.percent, windowMs);
  if (pace !== null && pace > 0) return ((100 - Math.min(100, last.percent)) * 1000) / pace;
  return filesTimeLeftMs(last.files, last.total, filesRate);
}

/** Time left at `rate` files per second, null when the rate is unknown or zero. */
export function filesTimeLeftMs(done: number, total: number, rate: number | null): number | null {
  if (rate === null || rate <= 0 || total <= 0) return null;
  return (Math.max(0, total - done) * 1000) / rate;
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
    filesPerSecond: null,
    etaMs: null,
    progressAt: null,
  };
}

function say(job: JobView, message: string): void {
  job.messages = [...job.messages, message].slice(-MAX_MESSAGES);
}

export class AnalysisJobs {
  private readonly jobs = new Map<string, JobView>();
  private readonly samples = new Map<string, Sample[]>();

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
        this.sample(job, at);
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
    this.samples.delete(jobId);
  }

  private sample(job: JobView, at: number): void {
    const list = (this.samples.get(job.jobId) ?? []).filter((s) => s.at >= at - 2 * RATE_WINDOW_MS && s.at <= at);
    list.push({ at, files: job.filesDone, total: job.totalFiles, percent: job.percent });
    this.samples.set(job.jobId, list);
    job.progressAt = at;
    job.filesPerSecond = filesPerSecond(list, job.startedAt);
    job.etaMs = timeLeftMs(list, job.startedAt, job.filesPerSecond);
  }

  /**
   * Folds in what `GET /admin/jobs/{id}` says (read once on load or after a reconnect): a job the events already
   * told more about is left alone, a job that ended meanwhile takes its end from the record.
   */
  merge(record: JobRecord): JobView {
    const created = record.created_at ? Date.parse(record.created_at) : NaN;
    const updated = record.updated_at ? Date.parse(record.updated_at) : NaN;
    let job = this.jobs.get(record.job_id);
    if (!job) {
      job = newJob(record.job_id, Number.isFinite(created) ? created : this.now());
      this.jobs.set(record.job_id, job);
    }
    if (record.path && !job.path) job.path = record.path;
    if (record.mode && !job.mode) job.mode = record.mode;
    if (isFinished(job.status)) return job;
    const data = (record.last_event ?? {}) as Record<string, unknown>;
    const end = Number.isFinite(updated) ? updated : this.now();
    switch (record.status) {
      case 'running':
        if (job.status === 'queued') job.status = 'running';
        if (typeof data.files_done === 'number' && data.files_done >= job.filesDone) {
          job.filesDone = data.files_done;
          job.totalFiles = typeof data.total_files === 'number' ? data.total_files : job.totalFiles;
          job.percent = clampPercent(data.percent, job.filesDone, job.totalFiles);
          if (typeof data.phase === 'string') job.phase = data.phase;
        } else if (typeof data.total_files === 'number' && job.totalFiles === 0) {
          job.totalFiles = data.total_files;
        }
        break;
      case 'completed': {
        const d = data as unknown as AnalysisCompletedData;
        job.status = 'completed';
        job.percent = 100;
        job.endedAt = end;
        job.endSeenAt = this.now();
        job.result = typeof d.nodes === 'number' ? d : null;
        job.filesDone = Math.max(job.filesDone, d.files ?? 0);
        break;
      }
      case 'failed':
        job.status = 'failed';
        job.endedAt = end;
        job.endSeenAt = this.now();
        job.error = typeof data.error === 'string' ? data.error : 'unknown error';
        break;
      case 'cancelled':
        job.status = 'cancelled';
        job.endedAt = end;
        job.endSeenAt = this.now();
        break;
      default:
        break;
    }
    return job;
  }
}
