import { describe, expect, it } from 'vitest';
import { isWatchJob, recentJobRecords, watchStateText, type WatchStatus } from './adminApi';
import type { JobRecord } from '../state/analysisJobs';

const base: WatchStatus = {
  project: 'demo',
  watching: true,
  path: '/home/u/repo',
  requested_ms: 1,
  state: 'watching',
  holder: null,
  last_change_ms: null,
  last_change_files: [],
  pending_changes: 0,
  last_run: null,
  error: null,
};

describe('watch status', () => {
  it('says what the watch does', () => {
    expect(watchStateText(null)).toBe('not watched');
    expect(watchStateText({ ...base, watching: false, path: null, state: 'off' })).toBe('not watched');
    expect(watchStateText(base)).toBe('watching /home/u/repo');
    expect(watchStateText({ ...base, state: 'catching_up' })).toBe('catching up on /home/u/repo');
    expect(watchStateText({ ...base, state: 'waiting' })).toBe('waiting for a worker to watch /home/u/repo');
    expect(watchStateText({ ...base, state: 'failed', error: 'folder vanished' })).toBe(
      'cannot watch /home/u/repo: folder vanished',
    );
  });

  it('tells a watch run from an analysis job', () => {
    expect(isWatchJob('watch-1a2b3c4d-7')).toBe(true);
    expect(isWatchJob('0f3e9a7c5b')).toBe(false);
  });
});

describe('recent jobs', () => {
  const record = (job_id: string): JobRecord => ({ job_id, status: 'completed' });

  it('takes the listing and reads only the remembered jobs it lacks', async () => {
    const read: string[] = [];
    const records = await recentJobRecords('demo', ['b', 'mine'], 5, {
      list: async (project, limit) => {
        expect([project, limit]).toEqual(['demo', 5]);
        return { project, jobs: [record('a'), record('b')] };
      },
      one: async (id) => {
        read.push(id);
        return record(id);
      },
    });
    expect(records.map((r) => r.job_id)).toEqual(['a', 'b', 'mine']);
    expect(read).toEqual(['mine']);
  });

  it('reads the remembered jobs one by one without the listing, leaving out what cannot be read', async () => {
    const records = await recentJobRecords('demo', ['x', 'gone'], 5, {
      list: () => Promise.reject(new Error('404')),
      one: (id) => (id === 'gone' ? Promise.reject(new Error('404')) : Promise.resolve(record(id))),
    });
    expect(records.map((r) => r.job_id)).toEqual(['x']);
  });
});
