import { describe, expect, it } from 'vitest';
import { duration, relativeTime } from './useNow';

describe('relative times', () => {
  it('says how long ago', () => {
    expect(relativeTime(null, 0)).toBe('never');
    expect(relativeTime(7000, 10_000)).toBe('3 s ago');
    expect(relativeTime(0, 125_000)).toBe('2 min ago');
    expect(relativeTime(0, 7_300_000)).toBe('2 h ago');
    expect(relativeTime(20_000, 10_000)).toBe('0 s ago');
  });
  it('formats elapsed times', () => {
    expect(duration(42_900)).toBe('42 s');
    expect(duration(185_000)).toBe('3 min 05 s');
    expect(duration(3_720_000)).toBe('1 h 02 min');
  });
});
