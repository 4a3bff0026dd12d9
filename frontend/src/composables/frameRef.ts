/**
 * A ref that takes the latest of many writes and shows it once per animation frame. A burst of thousands of events
 * (an analysis writes them far faster than anyone reads) then costs one render a frame instead of one per event.
 */
import { shallowRef, type ShallowRef } from 'vue';

export interface FrameRef<T> {
  ref: ShallowRef<T>;
  /** Sets the value shown from the next frame on; `compute` runs then, once, however often set() was called. */
  set(compute: () => T): void;
  cancel(): void;
}

export function frameRef<T>(initial: T): FrameRef<T> {
  const ref = shallowRef<T>(initial);
  let frame: number | null = null;
  let pending: (() => T) | null = null;
  return {
    ref,
    set(compute) {
      pending = compute;
      if (frame !== null) return;
      frame = requestAnimationFrame(() => {
        frame = null;
        const next = pending;
        pending = null;
        if (next) ref.value = next();
      });
    },
    cancel() {
      if (frame !== null) cancelAnimationFrame(frame);
      frame = null;
      pending = null;
    },
  };
}
