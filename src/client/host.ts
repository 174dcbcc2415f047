/**
 * What the client's session logic (ClusterLink, ClientStore, GrantCache) asks of the
 * world: connections to servers that carry decoded messages, timers, a clock, session
 * ids and the memory its data are mapped into. Production gives it Bun sockets and
 * mmap (bun_host.ts, src/memory); the simulator its network, virtual clock and a page
 * map (src/sim/client_host.ts, src/sim/memory.ts): the same client code runs in both.
 */
import { PStoreError, isErrorCode } from "../errors";
import type { HoldMode } from "../memory/segment";
import type { Message, Mode, Welcome } from "../wire";

export interface ConnectionEvents {
  onMessage(message: Message): void;
  onClose(reason: string): void;
}

/** One handshaken connection to a server. */
export interface ServerConnection {
  readonly address: string;
  readonly welcome: Welcome;
  /** False once it closed (either side). */
  readonly isOpen: boolean;
  /** Part of a frame has arrived from the server and the rest has not. */
  readonly receivingFrame: boolean;
  send(message: Message): void;
  /** Keeps the process alive while work is in flight, lets it exit when idle. */
  setActive(active: boolean): void;
  close(): void;
}

export interface TimerHandle {
  cancel(): void;
}

export interface ClientHost {
  /** Monotonic milliseconds. */
  nowMs(): number;
  /** Runs `fn` once after `ms` (keeps a process alive until then). */
  after(ms: number, fn: () => void): TimerHandle;
  /** Runs `fn` every `ms` (does not keep a process alive on its own). */
  every(ms: number, fn: () => void): TimerHandle;
  /**
   * Connects and completes the handshake within `timeoutMs`, or rejects with a
   * PStoreError: EUNAVAILABLE (ConnectionRefused when nobody listens), EPROTO, EAUTH.
   */
  dial(address: string, events: ConnectionEvents, timeoutMs: number): Promise<ServerConnection>;
  /** A fresh session id: 53 bits, never 0. */
  newSessionId(): number;
}

/** The client's mapped segment: MappedSegment in production, a page map in the simulator. */
export interface SegmentMemory {
  readonly size: number;
  readonly pageSize: number;
  view(offset: number, length: number): Uint8Array;
  /** Where a view handed out (or part of one) starts in the segment; -1 when it is not one. */
  offsetOf(view: ArrayBufferView): number;
  /** Labels the pages with a datum name (for fault messages). */
  setName(firstPage: number, pageCount: number, name: string): void;
  /** Copies pages in whatever their protection; page i of the run is at bytes[i * stride]. */
  writePagesStrided(firstPage: number, pageCount: number, bytes: Uint8Array, stride: number): void;
  /** Makes the pages zeros in whatever their protection. */
  zeroPages(firstPage: number, pageCount: number): void;
  /** Sets the pages' hold mode and clears their dirty marks. */
  protect(firstPage: number, pageCount: number, mode: HoldMode): void;
  /** Absolute indices of the pages of the range written under the write hold, ascending. */
  dirtyPages(firstPage: number, pageCount: number): Uint32Array;
  unmap(): void;
}

/** Maps the client's segment once the servers told its geometry. */
export type SegmentMapper = (size: number, pageSize: number) => SegmentMemory;

/** Uses of data, as the program sees them (the simulator checks each). */
export interface UseObserver {
  /** A use begins: granted by the servers, or locally from a cached grant. */
  onUse(use: { name: string; mode: Mode; holdId: number; local: boolean; view: Uint8Array }): void;
  /** A use ends: its view is released or abandoned (by the program, or by the store itself, as delete does). */
  onUseEnd(holdId: number): void;
}

/** Nothing listens at the address (ECONNREFUSED): unlike a silent or closing server, retrying soon will not help. */
export class ConnectionRefused extends PStoreError {
  constructor(readonly address: string) {
    super("EUNAVAILABLE", `${address}: connection refused`);
  }
}

export function remoteError(code: string, message: string): PStoreError {
  return new PStoreError(isErrorCode(code) ? code : "EPROTO", message);
}

/**
 * What `pstore agent` needs to lend this session's idle cached grants to the C
 * program it serves (src/agent/lending.ts): a lent grant is a use granted here,
 * which the program takes and returns through shared memory.
 */
export interface GrantLender {
  /** A use of `name` granted here now with no message, or null (then nothing was done). */
  accessLocal(name: string, mode: Mode): Uint8Array | null;
  /** Until when (the host's clock: performance.now() ms in production) uses may be granted here: the lease. */
  localGrantsUntilMs(): number;
}
