/** A NodeHost for tests of src/server over no sockets: its disk writes at once and has room. */
import type { NodeHost } from "../../src/server/host";

export function scriptedHost(clock: { now: number }, overrides: Partial<NodeHost> = {}): NodeHost {
  return {
    nowMs: () => clock.now,
    send() {},
    close() {},
    dial() {},
    defer: (fn) => queueMicrotask(fn),
    batch: (fn) => fn(),
    pendingBytes: () => 0,
    nonce: () => new Uint8Array(32),
    admit: () => null,
    largeFrame() {},
    largeFrameArrived() {},
    frameBuffer: (bytes) => new Uint8Array(bytes),
    disk: { write: (_items, written, unsynced) => (unsynced?.(), written()), waiting: false, spaceShort: () => false },
    log: { info() {}, warn() {}, error() {}, debug() {} },
    ...overrides,
  };
}
