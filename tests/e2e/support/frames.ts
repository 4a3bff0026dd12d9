/**
 * The frames the page's event sockets receive, read with the dashboard's own decoder (decodeEntry in
 * frontend/src/events/envelope.ts): a test compares what the page shows with what the wire carried, and every test
 * checks that the stack sends nothing that decoder cannot read.
 */
import { expect, type Page, type WebSocket } from '@playwright/test';
import { decodeEntry, type StreamEntry } from '../../../frontend/src/events/envelope';

/** Messages of the gateway that are not stream entries (docs/DESIGN.md, "WebSocket surface"). */
const CONTROL_TYPES = new Set(['pong', 'subscribed', 'resync_required', 'error']);

export class FrameRecorder {
  /** Every stream entry received, replays and second copies included, in arrival order. */
  readonly received: StreamEntry[] = [];
  /** Frames that are neither a control message nor a stream entry the decoder reads. */
  readonly unreadable: string[] = [];

  constructor(page: Page) {
    page.on('websocket', (ws) => this.follow(ws));
  }

  private follow(ws: WebSocket): void {
    if (new URL(ws.url()).pathname !== '/ws/events') return;
    ws.on('framereceived', ({ payload }) => this.record(typeof payload === 'string' ? payload : payload.toString('utf8')));
  }

  private record(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.unreadable.push(text);
      return;
    }
    const type = (msg as { type?: unknown } | null)?.type;
    if (typeof type === 'string' && CONTROL_TYPES.has(type)) return;
    const entry = decodeEntry(msg);
    if (entry === null) this.unreadable.push(text);
    else this.received.push(entry);
  }

  /** Each entry once (its first copy), in arrival order: what the page must deliver. */
  entries(): StreamEntry[] {
    const seen = new Set<string>();
    return this.received.filter((e) => !seen.has(e.id) && seen.add(e.id));
  }

  /** The changes in entries(). */
  changes(): number {
    return this.entries().reduce((n, e) => n + e.changes.length, 0);
  }

  /** Waits until `count` distinct entries arrived, and returns them. */
  async waitForEntries(count: number): Promise<StreamEntry[]> {
    await expect.poll(() => this.entries().length, { message: `${count} stream entries on the wire` }).toBe(count);
    return this.entries();
  }
}
