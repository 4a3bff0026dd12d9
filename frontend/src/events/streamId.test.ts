import { describe, expect, it } from 'vitest';
import { compareStreamIds, isStreamId, StreamCursor } from './streamId';

describe('compareStreamIds', () => {
  it('compares the millisecond part numerically', () => {
    expect(compareStreamIds('999-0', '1000-0')).toBeLessThan(0);
    expect(compareStreamIds('1000-0', '999-5')).toBeGreaterThan(0);
  });
  it('compares the sequence part numerically when the milliseconds are equal', () => {
    expect(compareStreamIds('5-9', '5-10')).toBeLessThan(0);
    expect(compareStreamIds('5-10', '5-10')).toBe(0);
  });
  it('handles values beyond 2^53', () => {
    expect(compareStreamIds('18446744073709551615-1', '18446744073709551615-0')).toBeGreaterThan(0);
  });
  it('recognises stream ids', () => {
    expect(isStreamId('1-0')).toBe(true);
    expect(isStreamId('1')).toBe(false);
    expect(isStreamId('a-b')).toBe(false);
  });
});

describe('StreamCursor', () => {
  it('accepts each id once', () => {
    const c = new StreamCursor();
    expect(c.accept('1-0')).toBe(true);
    expect(c.accept('1-0')).toBe(false);
    expect(c.last).toBe('1-0');
  });
  it('treats ids at or below its start as seen', () => {
    const c = new StreamCursor('10-0');
    expect(c.accept('9-9')).toBe(false);
    expect(c.accept('10-0')).toBe(false);
    expect(c.accept('10-1')).toBe(true);
  });
  it('keeps a bounded window and treats evicted ids as seen', () => {
    const c = new StreamCursor(null, 3);
    for (const id of ['1-0', '2-0', '3-0', '4-0']) c.accept(id);
    expect(c.accept('1-0')).toBe(false);
    expect(c.accept('2-0')).toBe(false);
    expect(c.accept('4-0')).toBe(false);
    expect(c.accept('5-0')).toBe(true);
  });
  it('reset starts over from a snapshot point', () => {
    const c = new StreamCursor();
    c.accept('100-0');
    c.reset('50-0');
    expect(c.last).toBe('50-0');
    expect(c.accept('50-0')).toBe(false);
    expect(c.accept('60-0')).toBe(true);
  });
});
