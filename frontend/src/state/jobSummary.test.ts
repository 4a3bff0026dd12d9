import { describe, expect, it } from 'vitest';
import type { CdcEvent } from '../events/envelope';
import { AnalysisJobs, filesPerSecond, filesTimeLeftMs, timeLeftMs, type Sample } from './analysisJobs';
import { etaNow, jobStatusLine, progressText, recentJobIds, recentJobs, rememberJob } from './jobSummary';

const T0 = Date.parse('2026-11-27T00:00:00.000Z');
let seq = 0;
function ev(type: string, data: Record<string, unknown>, atMs: number, job = 'j1'): CdcEvent {
  seq += 1;
  const ts = new Date(T0 + atMs).toISOString();
  return { id: `${seq}-0`, index: 0, project: 'p', type, entity: { kind: 'job', id: job }, data: { job_id: job, ...data }, ts };
}
const clock = () => T0 + 3_600_000;

function progress(jobs: AnalysisJobs, done: number, total: number, atMs: number) {
  return jobs.apply(
    ev('analysis_progress', { files_done: done, total_files: total, current_file: 'a.py', phase: 'parsing', percent: (100 * done) / total }, atMs),
  )!;
}

class MemoryStorage {
  private m = new Map<string, string>();
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
}

describe('rate and time left', () => {
  it('measures files per second over the recent window of progress events', () => {
    // 10 files/s for 20 s, then 50 files/s: the window (10 s) sees only the new pace.
    const samples: Sample[] = [];
    const at = (t: number, files: number, percent = 0) => samples.push({ at: T0 + t, files, total: 1000, percent });
    for (let t = 0; t <= 20_000; t += 1000) at(t, t / 100);
    for (let t = 21_000; t <= 32_000; t += 1000) at(t, 200 + (t - 20_000) / 20);
    expect(filesPerSecond(samples, T0)).toBeCloseTo(50, 5);
    // Then the files stand still (the later phases): the rate stays the reading pace.
    for (let t = 33_000; t <= 40_000; t += 1000) at(t, 800);
    expect(filesPerSecond(samples, T0)).toBeCloseTo(50, 5);
  });

  it('estimates the time left from the pace of the percent, which moves in every phase', () => {
    const samples: Sample[] = [];
    // Files all read at 8 s; the percent goes on at 5 %/s: at 60 %, 8 s are left.
    for (let t = 0; t <= 12_000; t += 1000) samples.push({ at: T0 + t, files: Math.min(100, t / 80), total: 100, percent: t / 200 });
    expect(timeLeftMs(samples, T0, 12.5)).toBeCloseTo(8000);
    // A percent that does not move: the files left at the files' rate.
    const still = [0, 1000, 2000].map((t) => ({ at: T0 + t, files: t / 100, total: 100, percent: 0 }));
    expect(timeLeftMs(still, T0, 10)).toBeCloseTo(8000);
    expect(timeLeftMs([], T0, 10)).toBeNull();
  });

  it('uses the time since the start when one sample is all there is, and nothing before 300 ms', () => {
    expect(filesPerSecond([{ at: T0 + 2000, files: 10, total: 20, percent: 50 }], T0)).toBeCloseTo(5);
    expect(filesPerSecond([{ at: T0 + 100, files: 10, total: 20, percent: 50 }], T0)).toBeNull();
    expect(filesPerSecond([], T0)).toBeNull();
  });

  it('has no time left without a rate', () => {
    expect(filesTimeLeftMs(10, 100, null)).toBeNull();
    expect(filesTimeLeftMs(10, 100, 0)).toBeNull();
    expect(filesTimeLeftMs(10, 100, 9)).toBeCloseTo(10_000);
  });

  it('follows a job: 20 files/s, 80 files left → about 4 s, counted down between events', () => {
    const jobs = new AnalysisJobs(clock);
    jobs.apply(ev('analysis_started', { total_files: 100, languages: ['python'], path: '/r', mode: 'full' }, 0));
    progress(jobs, 0, 100, 0);
    progress(jobs, 10, 100, 500);
    const job = progress(jobs, 20, 100, 1000);
    expect(job.filesPerSecond).toBeCloseTo(20);
    expect(job.etaMs).toBeCloseTo(4000);
    expect(etaNow(job, T0 + 2000)).toBeCloseTo(3000);
    expect(etaNow(job, T0 + 60_000)).toBe(0);
    expect(progressText(job, T0 + 1000)).toBe('20% · 20 / 100 files · 20 files/s · about 4 s left');
  });
});

describe('the status line', () => {
  it('says queued, running, completed with counts and duration', () => {
    const jobs = new AnalysisJobs(clock);
    let job = jobs.queued('abcdef0123', '/r', 'full');
    expect(jobStatusLine(job, T0)).toBe('Job abcdef01 queued');
    jobs.apply(ev('analysis_started', { total_files: 4, languages: [], path: '/r', mode: 'full' }, 0, 'abcdef0123'));
    job = jobs.apply(ev('analysis_progress', { files_done: 2, total_files: 4, percent: 50 }, 1000, 'abcdef0123'))!;
    expect(jobStatusLine(job, T0 + 1000)).toBe('Job abcdef01 running: 50% · 2 / 4 files · 2.0 files/s · a moment left');
    job = jobs.apply(ev('analysis_progress', { files_done: 2, total_files: 10, percent: 20 }, 1000, 'abcdef0123'))!;
    expect(jobStatusLine(job, T0 + 1000)).toBe('Job abcdef01 running: 20% · 2 / 10 files · 2.0 files/s · about 4 s left');
    job = jobs.apply(
      ev('analysis_completed', { nodes: 9, relationships: 8, files: 4, skipped: 0, errors: 0, duration_ms: 1500 }, 1500, 'abcdef0123'),
    )!;
    expect(jobStatusLine(job, T0 + 2000)).toBe('Job abcdef01 completed in 1.5 s: 4 files, 9 nodes, 8 relationships');
  });

  it('says why a job failed instead of "queued"', () => {
    const jobs = new AnalysisJobs(clock);
    jobs.queued('j1', '/etc', 'full');
    const job = jobs.apply(ev('analysis_failed', { error: 'path /etc is outside the allowed roots (/srv)' }, 10))!;
    expect(jobStatusLine(job, T0)).toBe('Job j1 failed: path /etc is outside the allowed roots (/srv)');
  });
});

describe('job records read once (GET /admin/jobs/{id})', () => {
  it('take a failure the events were too late for', () => {
    const jobs = new AnalysisJobs(clock);
    const job = jobs.merge({
      job_id: 'j1',
      path: '/etc',
      mode: 'full',
      status: 'failed',
      created_at: '2026-11-27T00:00:00Z',
      updated_at: '2026-11-27T00:00:01Z',
      last_event: { job_id: 'j1', error: 'outside the allowed roots' },
    });
    expect(job).toMatchObject({ status: 'failed', error: 'outside the allowed roots', path: '/etc', endedAt: T0 + 1000 });
  });

  it('take a completed result with its counts', () => {
    const jobs = new AnalysisJobs(clock);
    const job = jobs.merge({
      job_id: 'j1',
      status: 'completed',
      last_event: { job_id: 'j1', nodes: 3, relationships: 2, files: 1, skipped: 0, errors: 0, duration_ms: 200 },
    });
    expect(jobStatusLine(job, T0)).toBe('Job j1 completed in 0.2 s: 1 files, 3 nodes, 2 relationships');
  });

  it('never move a job the events finished (or moved further) back', () => {
    const jobs = new AnalysisJobs(clock);
    jobs.apply(ev('analysis_started', { total_files: 10, path: '/r', mode: 'full' }, 0));
    progress(jobs, 6, 10, 1000);
    let job = jobs.merge({ job_id: 'j1', status: 'running', last_event: { files_done: 3, total_files: 10, percent: 30 } });
    expect(job.filesDone).toBe(6);
    jobs.apply(ev('analysis_completed', { nodes: 1, relationships: 0, files: 10, skipped: 0, errors: 0, duration_ms: 2000 }, 2000));
    job = jobs.merge({ job_id: 'j1', status: 'running', last_event: { files_done: 8, total_files: 10, percent: 80 } });
    expect(job.status).toBe('completed');
  });
});

describe('recent jobs', () => {
  it('keeps five ids per project, newest first, once each', () => {
    const s = new MemoryStorage();
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'c']) rememberJob(s, 'p', id);
    expect(recentJobIds(s, 'p')).toEqual(['c', 'f', 'e', 'd', 'b']);
    expect(recentJobIds(s, 'other')).toEqual([]);
    s.setItem('codegraph.jobs.p', 'not json');
    expect(recentJobIds(s, 'p')).toEqual([]);
  });

  it('lists the remembered jobs first, then others the page saw, newest first', () => {
    const jobs = new AnalysisJobs(clock);
    jobs.apply(ev('analysis_started', { total_files: 1, path: '/r', mode: 'full' }, 0, 'old'));
    jobs.apply(ev('analysis_started', { total_files: 1, path: '/r', mode: 'full' }, 5000, 'watch-1'));
    jobs.queued('mine', '/r', 'full');
    const ids = recentJobs(jobs.list(), ['mine', 'gone']).map((j) => j.jobId);
    expect(ids).toEqual(['mine', 'watch-1', 'old']);
  });
});
