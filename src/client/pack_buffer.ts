/**
 * The buffer a client packs a large write release into, kept for the next one. Each 64 MiB
 * release packed into a new buffer faulted in 16,384 fresh pages (~11 µs each on our VM,
 * docs/benchmarks.md): 50-400 ms of the client's system time per rewrite, on the release's
 * path. A buffer comes back only when its release was answered and went out on one
 * connection only: the server read all of it, and no queued resend still refers to it. The
 * kept buffer goes once no large release came for PACK_BUFFER_IDLE_MS.
 */
import { PACK_BUFFER_BYTES_MIN, PACK_BUFFER_IDLE_MS } from "../constants";
import type { ClientHost, TimerHandle } from "./host";

export class PackBuffer {
  private kept: ArrayBuffer | null = null;
  /** Buffers this lent and may take back. */
  private readonly lent = new WeakSet<ArrayBuffer>();
  /** When the kept buffer came back: the idle time counts from there. */
  private lastUsedMs = 0;
  private sweeper: TimerHandle | null = null;

  constructor(private readonly host: ClientHost) {}

  /** A buffer of exactly `bytes`: the kept one if it is big enough, else a new one (kept later if large). */
  take = (bytes: number): Uint8Array => {
    if (bytes < PACK_BUFFER_BYTES_MIN) return new Uint8Array(bytes);
    let buffer = this.kept;
    this.kept = null;
    if (buffer === null || buffer.byteLength < bytes) {
      buffer = new ArrayBuffer(bytes);
      this.lent.add(buffer);
    }
    return new Uint8Array(buffer, 0, bytes);
  };

  /** The release packed in `section` is over and nothing refers to the section any more. */
  giveBack(section: Uint8Array): void {
    const buffer = section.buffer as ArrayBuffer;
    if (!this.lent.has(buffer)) return;
    if (this.kept !== null && this.kept.byteLength >= buffer.byteLength) return;
    this.kept = buffer;
    this.lastUsedMs = this.host.nowMs();
    this.sweeper ??= this.host.every(PACK_BUFFER_IDLE_MS, () => {
      if (this.host.nowMs() - this.lastUsedMs < PACK_BUFFER_IDLE_MS) return;
      this.drop();
    });
  }

  /** Forgets the kept buffer (idle, or the store closes). */
  drop(): void {
    this.kept = null;
    this.sweeper?.cancel();
    this.sweeper = null;
  }

  /** Bytes kept for the next large release (tests). */
  get keptBytes(): number {
    return this.kept?.byteLength ?? 0;
  }
}
