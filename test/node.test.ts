/**
 * The server node (src/server/node.ts) over a scripted host: what it does with the order in
 * which a host hands it events, for orders a live server seldom shows.
 */
import { describe, expect, test } from "bun:test";
import { Replica, StoreState } from "../src/core";
import { ServerNode } from "../src/server/node";
import { PROTOCOL_VERSION } from "../src/constants";
import { encodeMessage, helloMessage, type PeerMessage } from "../src/wire";
import { scriptedHost } from "./helpers/node_host";

const PAGE = 4096;
const OPTIONS = { sessionTimeoutMsDefault: 1000, heartbeatMs: 100, suspectMs: 500 };

/** Server 1 of [1, 2], ticked once at the clock's time. */
function nodeOf1(clock: { now: number }): { node: ServerNode; replica: Replica } {
  const replica = new Replica({ selfId: 1, peers: [1, 2], ...OPTIONS }, new StoreState(16 * PAGE, PAGE));
  const node = new ServerNode(
    replica,
    { selfId: 1, addresses: ["a:1", "a:2"], segmentSize: 16 * PAGE, pageSize: PAGE, sessionTimeoutMs: 1000, heartbeatMs: 100, suspectMs: 500, inboundBufferedBytesMax: 1 << 20, peerFrameBytesMax: 1 << 20 },
    scriptedHost(clock),
  );
  node.tick();
  return { node, replica };
}

/** Server 2 forms [2, 1] with us: we are its tail. */
function joinChainOf2(replica: Replica): void {
  replica.onPeerMessage({ type: "heartbeat", from: 2, epoch: 0, chain: [], status: "booting", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 10);
  replica.onPeerMessage({ type: "config", from: 2, epoch: 66, chain: [2, 1], issued: true }, 20);
  expect([replica.status, replica.config.chain]).toEqual(["member", [2, 1]]);
}

describe("a server node", () => {
  // Sim seed 323016180: a head stopped 713 ms read a joiner's news before its tick, issued a
  // configuration (which heartbeats), and the tick then found it had just spoken: it served on
  // as head of a chain the others had left, and overwrote what they acknowledged meanwhile.
  test("input that arrives long after the last tick waits for a tick first: a pause is noticed before anything is read", () => {
    const clock = { now: 0 };
    const { node, replica } = nodeOf1(clock);
    joinChainOf2(replica);
    clock.now = 50;
    node.tick();
    clock.now = 800; // stopped 750 ms: past --suspect-ms, the others may have removed us
    node.onBytes(7, new Uint8Array(0)); // bytes that waited, on a connection the node does not know
    expect(replica.status).toBe("booting");
  });

  /** Server 1, tail of [2,1], linked to 2 both ways (its own connection 11 to 2, 2's connection 10 to it). */
  function tailLinkedTo2(clock: { now: number }): { node: ServerNode; replica: Replica } {
    const { node, replica } = nodeOf1(clock);
    node.onAccepted(10);
    node.onBytes(10, encodeMessage(helloMessage("server", 2, new Uint8Array(32))));
    node.onDialled(2, 11);
    node.onBytes(11, encodeMessage({ type: "welcome", body: { version: PROTOCOL_VERSION, serverId: 2, segmentSize: 16 * PAGE, pageSize: PAGE, epoch: 0, chain: [] } }));
    joinChainOf2(replica);
    return { node, replica };
  }
  const heartbeatOf2: PeerMessage = { type: "heartbeat", from: 2, epoch: 66, chain: [2, 1], status: "member", appliedSeq: 0, lastEpoch: 0, busyMs: 0 };
  /** Ticks every 50 ms from `fromMs` to `toMs`, hearing 2 until `heardUntilMs`. */
  function run(node: ServerNode, replica: Replica, clock: { now: number }, fromMs: number, toMs: number, heardUntilMs: number): void {
    for (clock.now = fromMs; clock.now <= toMs; clock.now += 50) {
      node.tick();
      if (clock.now <= heardUntilMs) replica.onPeerMessage(heartbeatOf2, clock.now);
    }
  }

  // Sim seed 333005106: server 2's connection to 1 was cut while 1's heartbeats to 2 were held up
  // 200 ms on 1's own connection; 2 took the cut for a death, removed 1 two heartbeats later, and
  // both served as chains of their own.
  test("a reset of our connection to a peer whose own connection to us is open does not make it suspect sooner", () => {
    const clock = { now: 0 };
    const { node, replica } = tailLinkedTo2(clock);
    run(node, replica, clock, 50, 300, 300);
    node.onClosed(11); // our connection to 2 cut; 2's to us still open
    run(node, replica, clock, 350, 750, 0); // 450 ms without a word: < --suspect-ms 500
    expect(replica.config.chain).toEqual([2, 1]);
  });

  test("a peer whose every connection closed (a killed process) is suspected two heartbeats later", () => {
    const clock = { now: 0 };
    const { node, replica } = tailLinkedTo2(clock);
    run(node, replica, clock, 50, 300, 300);
    node.onClosed(11);
    node.onClosed(10);
    run(node, replica, clock, 350, 600, 0);
    expect(replica.config.chain).toEqual([1]);
  });

  // Sim seed 351002008: a cut each way, the second while the first's new connection was still in
  // its handshake; both ends suspected early and served as two chains though a connection came back.
  test("a connection that completes its handshake, either way, ends the early suspicion", () => {
    const welcomeOf2 = encodeMessage({ type: "welcome", body: { version: PROTOCOL_VERSION, serverId: 2, segmentSize: 16 * PAGE, pageSize: PAGE, epoch: 66, chain: ["a:2", "a:1"] } });
    for (const reconnect of ["ours", "theirs"] as const) {
      const clock = { now: 0 };
      const { node, replica } = tailLinkedTo2(clock);
      run(node, replica, clock, 50, 300, 300);
      node.onClosed(11);
      node.onClosed(10);
      clock.now = 320;
      if (reconnect === "ours") {
        node.onDialled(2, 12);
        node.onBytes(12, welcomeOf2);
      } else {
        node.onAccepted(13);
        node.onBytes(13, encodeMessage(helloMessage("server", 2, new Uint8Array(32))));
      }
      run(node, replica, clock, 350, 750, 0); // 450 ms without a heartbeat: < --suspect-ms 500
      expect(replica.config.chain).toEqual([2, 1]);
      run(node, replica, clock, 800, 900, 0); // past --suspect-ms: suspected as ever
      expect(replica.config.chain).toEqual([1]);
    }
  });
});
