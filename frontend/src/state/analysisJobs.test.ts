import { describe, expect, it } from 'vitest';
import type { CdcEvent } from '../events/envelope';
import { AnalysisJobs } from './analysisJobs';

let seq = 0;
function ev(type: string, data: Record<string, unknown>, ts = '2026-11-27T00:00:00.000Z'): CdcEvent {
  seq += 1;
  return { id: `${seq}-0`, index: 0, project: 'default', type, entity: { kind: 'job', id: 'j1' }, data, ts };
}
const now = () => Date.parse('2026-11-27T00:01:00.000Z');

describe('AnalysisJobs', () => {
  it('follows a job from start to completion', () => {
    const jobs = new AnalysisJobs(now);
    jobs.apply(ev('analysis_started', { job_id: 'j1', total_files: 4, languages: ['python'], path: '/src', mode: 'full' }));
    let job = jobs.apply(
      ev('analysis_progress', { job_id: 'j1', files_done: 1, total_files: 4, current_file: 'a.py', phase: 'parsing', percent: 25 }),
    )!;
    expect(job).toMatchObject({ status: 'running', percent: 25, filesDone: 1, totalFiles: 4, currentFile: 'a.py' });
    job = jobs.apply(
      ev('analysis_completed', { job_id: 'j1', nodes: 9, relationships: 8, files: 4, skipped: 0, errors: 0, duration_ms: 1500 }),
    )!;
    expect(job.status).toBe('completed');
    expect(job.percent).toBe(100);
    expect(job.messages.at(-1)).toContain('9 nodes');
    expect(job.messages.some((m) => m.includes('Phase: parsing'))).toBe(true);
  });

  it('lists languages given as files per language', () => {
    const jobs = new AnalysisJobs(now);
    const job = jobs.apply(
      ev('analysis_started', { job_id: 'j1', total_files: 3, languages: { python: 2, rust: 1 }, path: '/s', mode: 'full' }),
    )!;
    expect(job.languages).toEqual(['python (2)', 'rust (1)']);
    expect(job.messages.at(-1)).toContain('python (2), rust (1)');
  });

  it('remembers when the page saw the end, even if the event is older', () => {
    const jobs = new AnalysisJobs(now);
    const job = jobs.apply(ev('analysis_cancelled', { job_id: 'j1' }, '2026-11-27T00:00:00.000Z'))!;
    expect(job.endedAt).toBe(Date.parse('2026-11-27T00:00:00.000Z'));
    expect(job.endSeenAt).toBe(now());
  });

  it('knows a job from its progress alone (the page opened mid-analysis)', () => {
    const jobs = new AnalysisJobs(now);
    const job = jobs.apply(
      ev('analysis_progress', { job_id: 'j9', files_done: 5, total_files: 10, current_file: 'x', phase: 'p' }),
    )!;
    expect(job.jobId).toBe('j9');
    expect(job.percent).toBe(50);
  });

  it('records failure and cancellation, and ignores progress after the end', () => {
    const jobs = new AnalysisJobs(now);
    jobs.queued('j1', '/src', 'full');
    jobs.cancelling('j1');
    expect(jobs.get('j1')!.status).toBe('cancelling');
    jobs.apply(ev('analysis_cancelled', { job_id: 'j1' }));
    jobs.apply(ev('analysis_progress', { job_id: 'j1', files_done: 3, total_files: 4, percent: 75 }));
    expect(jobs.get('j1')).toMatchObject({ status: 'cancelled', percent: 0 });
    jobs.apply(ev('analysis_failed', { job_id: 'j2', error: 'disk full' }));
    expect(jobs.get('j2')).toMatchObject({ status: 'failed', error: 'disk full' });
  });

  it('ignores events that are not about analysis', () => {
    const jobs = new AnalysisJobs(now);
    expect(jobs.apply(ev('node_added', { id: 'a' }))).toBeNull();
    expect(jobs.list()).toEqual([]);
  });
});
