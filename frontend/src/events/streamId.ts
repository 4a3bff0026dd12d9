/**
 * Redis Stream entry IDs (`<ms>-<seq>`), the offset every event carries (docs/DESIGN.md, invariant 2).
 *
 * IDs must be compared numerically part by part: as strings, "999-0" sorts after "1000-0". Both parts can exceed
 * 2^53 in theory, so they are compared as BigInt.
 */

export type StreamId = string;

const STREAM_ID = /^(\d+)-(\d+)$/;

export function isStreamId(value: unknown): value is StreamId {
  return typeof value === 'string' && STREAM_ID.test(value);
}

function parts(id: StreamId): [bigint, bigint] {
  const m = STREAM_ID.exec(id);
  if (!m) throw new Error(`not a stream id: ${id}`);
  return [BigInt(m[1]), BigInt(m[2])];
}

/** Negative when a < b, zero when equal, positive when a > b. */
export function compareStreamIds(a: StreamId, b: StreamId): number {
  const [am, as] = parts(a);
  const [bm, bs] = parts(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

export function maxStreamId(a: StreamId | null, b: StreamId): StreamId {
  return a === null || compareStreamIds(b, a) > 0 ? b : a;
}

/**
 * Remembers which events were already delivered, so that an event seen twice (replayed after a reconnect, or sent
 * by two gateways) is delivered once.
 *
 * It keeps the highest ID seen (the resume point) and a bounded window of recent IDs. An ID at or below the floor
 * (the highest ID evicted from the window, or the point a snapshot is consistent with) counts as seen; an ID above
 * the floor counts as seen only if it is in the window. So an older event that arrives late, but was never
 * delivered, is still accepted instead of being dropped for being "behind".
 */
export class StreamCursor {
  private readonly window = new Set<StreamId>();
  private floor: StreamId | null;
  private highest: StreamId | null;

  constructor(
    start: StreamId | null = null,
    private readonly windowSize = 10_000,
  ) {
    this.floor = start;
    this.highest = start;
  }

  /** The ID to resume from (`?since=`): the highest one delivered, or the start point. */
  get last(): StreamId | null {
    return this.highest;
  }

  /** Records `id` and says whether it is new (true) or a duplicate (false). */
  accept(id: StreamId): boolean {
    if (this.floor !== null && compareStreamIds(id, this.floor) <= 0) return false;
    if (this.window.has(id)) return false;
    this.window.add(id);
    this.highest = maxStreamId(this.highest, id);
    if (this.window.size > this.windowSize) {
      const oldest = this.window.values().next().value as StreamId;
      this.window.delete(oldest);
      this.floor = maxStreamId(this.floor, oldest);
    }
    return true;
  }

  /**
   * Raises the resume point to `id` when nothing newer was seen, without treating older IDs as seen: an event
   * below `id` that is still on its way is delivered when it arrives. Returns whether the resume point moved.
   */
  adopt(id: StreamId): boolean {
    if (this.highest !== null && compareStreamIds(id, this.highest) <= 0) return false;
    this.highest = id;
    return true;
  }

  /** Starts over from a point everything up to which is already known (a snapshot's `since`). */
  reset(start: StreamId | null): void {
    this.window.clear();
    this.floor = start;
    this.highest = start;
  }
}
