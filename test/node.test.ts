/**
 * The server node (src/server/node.ts) over a scripted host: what it does with the order in
 * which a host hands it events, for orders a live server seldom shows.
 */
import { describe, expect, test } from "bun:test";
import { Replica, StoreState } from "../src/core";
import type { NodeHost } from "../src/server/host";
import { ServerNode } from "../src/server/node";

const PAGE = 4096;
const OPTIONS = { sessionTimeoutMsDefault: 1000, heartbeatMs: 100, suspectMs: 500 };

/** A host whose clock the test moves; its disk writes at once and has room. */
function scriptedHost(clock: { now: number }): NodeHost {
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
    frameBuffer: (bytes) => new Uint8Array(bytes),
    disk: { write: (_items, written, unsynced) => (unsynced?.(), written()), waiting: false, spaceShort: () => false },
    log: { info() {}, warn() {}, error() {}, debug() {} },
  };
}

describe("a server node", () => {
  // Sim seed 323016180: a head stopped 713 ms read a joiner's news before its tick, issued a
  // configuration (which heartbeats), and the tick then found it had just spoken: it served on
  // as head of a chain the others had left, and overwrote what they acknowledged meanwhile.
  test("input that arrives long after the last tick waits for a tick first: a pause is noticed before anything is read", () => {
    const clock = { now: 0 };
    const replica = new Replica({ selfId: 1, peers: [1, 2], ...OPTIONS }, new StoreState(16 * PAGE, PAGE));
    const node = new ServerNode(
      replica,
      { selfId: 1, addresses: ["a:1", "a:2"], segmentSize: 16 * PAGE, pageSize: PAGE, sessionTimeoutMs: 1000, heartbeatMs: 100, suspectMs: 500, inboundBufferedBytesMax: 1 << 20, peerFrameBytesMax: 1 << 20 },
      scriptedHost(clock),
    );
    node.tick();
    replica.onPeerMessage({ type: "heartbeat", from: 2, epoch: 0, chain: [], status: "booting", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 10);
    replica.onPeerMessage({ type: "config", from: 2, epoch: 66, chain: [2, 1], issued: true }, 20);
    expect(replica.status).toBe("member");
    clock.now = 50;
    node.tick();
    clock.now = 800; // stopped 750 ms: past --suspect-ms, the others may have removed us
    node.onBytes(7, new Uint8Array(0)); // bytes that waited, on a connection the node does not know
    expect(replica.status).toBe("booting");
  });
});
