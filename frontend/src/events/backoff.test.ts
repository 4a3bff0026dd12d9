import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff';

const opts = { baseMs: 500, maxMs: 30_000, factor: 2 };

describe('backoffDelay', () => {
  it('doubles each attempt', () => {
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, opts, () => 1))).toEqual([500, 1000, 2000, 4000]);
  });
  it('never exceeds the maximum', () => {
    expect(backoffDelay(50, opts, () => 1)).toBe(30_000);
    expect(backoffDelay(1000, opts, () => 1)).toBe(30_000);
  });
  it('keeps at least half of the step and randomises the rest', () => {
    expect(backoffDelay(3, opts, () => 0)).toBe(2000);
    expect(backoffDelay(3, opts, () => 0.5)).toBe(3000);
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(4, opts)));
    for (const d of seen) {
      expect(d).toBeGreaterThanOrEqual(4000);
      expect(d).toBeLessThanOrEqual(8000);
    }
    expect(seen.size).toBeGreaterThan(1);
  });
});
