import { describe, expect, it } from 'vitest';
import { isWatchJob, watchStateText, type WatchStatus } from './adminApi';

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
