import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { batcher } from './batcher';

describe('batcher', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs a lone change at once and a burst in batches spaced apart', () => {
    const runs: number[] = [];
    const b = batcher(() => runs.push(Date.now()), () => 100, () => Date.now());
    const start = Date.now();
    b.schedule();
    vi.advanceTimersByTime(0);
    expect(runs.map((t) => t - start)).toEqual([0]); // quiet before: no wait

    // A burst right after: the calls become one run, 100 ms after the previous one.
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(10);
      b.schedule();
    }
    vi.advanceTimersByTime(49);
    expect(runs.length).toBe(1);
    vi.advanceTimersByTime(1);
    expect(runs.map((t) => t - start)).toEqual([0, 100]);

    // Quiet again for longer than the spacing: the next one runs at once.
    vi.advanceTimersByTime(500);
    b.schedule();
    vi.advanceTimersByTime(0);
    expect(runs.length).toBe(3);
    expect(runs[2] - runs[1]).toBe(500);
  });

  it('cancel drops a scheduled run', () => {
    let runs = 0;
    const b = batcher(() => runs++, () => 100, () => Date.now());
    b.schedule();
    b.cancel();
    vi.advanceTimersByTime(1000);
    expect(runs).toBe(0);
  });
});
