/**
 * Batches work that live events trigger: `schedule()` runs `flush` at once (on the next task) when the last run was
 * at least `spacing()` ms ago, so a lone change shows without waiting; otherwise when `spacing()` ms have passed
 * since that run, so a burst is drawn in batches instead of once per event. Several `schedule()` calls before the
 * run make one run.
 */
export interface Batcher {
  schedule(): void;
  cancel(): void;
}

export function batcher(flush: () => void, spacing: () => number, now: () => number = () => performance.now()): Batcher {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let last = -Infinity;
  const run = (): void => {
    timer = null;
    last = now();
    flush();
  };
  return {
    schedule() {
      if (timer !== null) return;
      timer = setTimeout(run, Math.max(0, last + spacing() - now()));
    },
    cancel() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
