/**
 * --fsync always without one sync after another (src/core/chain_sync.ts): a server forwards
 * before its own sync, and the tail replies only once every server of the chain has synced
 * what the reply rests on. The simulator runs it with disks (crashes between a forward and
 * its sync); these tests pin the rules themselves.
 */
import { describe, expect, test } from "bun:test";
import { Replica, StoreState, type Update } from "../src/core";
import { EpochHistory } from "../src/core/epochs";
import type { Ready } from "../src/core/ready";
import { type Op, PREV_EPOCH_UNKNOWN, type PeerMessage } from "../src/wire";

const PS = 64;
const OPTIONS = { sessionTimeoutMsDefault: 60_000, heartbeatMs: 100, suspectMs: 1000, awaitSync: true };

/** Server `selfId` of the chain `chain` (epoch 65), at seq 1: session 5 open. */
function member(selfId: number, chain = [1, 2]): Replica {
  const state = new StoreState(16 * PS, PS);
  const epochs = new EpochHistory(0, 0);
  state.apply({ seq: 1, epoch: 65, session: 5, reqNo: 1, doneBelow: 0, op: { type: "open_session", timeoutMs: 60_000 } });
  epochs.note(1, 65);
  const replica = new Replica({ selfId, peers: chain, ...OPTIONS }, state, 65, undefined, undefined, epochs);
  replica.onTick(0);
  for (const from of chain) {
    if (from !== selfId) replica.onPeerMessage({ type: "heartbeat", from, epoch: 0, chain: [], status: "booting", appliedSeq: 1, lastEpoch: 65, busyMs: 0 }, 10);
  }
  replica.onPeerMessage({ type: "config", from: chain[0]!, epoch: 65, chain, issued: true }, 20);
  if (replica.status !== "member") throw new Error(`server ${selfId} is ${replica.status}, not a member`);
  return replica;
}

const update = (seq: number, op: Op): Update => ({ seq, epoch: 65, session: 5, reqNo: seq, doneBelow: 0, op });
const create = (seq: number): Update => update(seq, { type: "create", name: `d${seq}`, size: 1 });
const forward = (updates: Update[], durable?: { seq: number; epoch: number }, from = 1): PeerMessage => ({ type: "forward", from, epoch: 65, prevEpoch: 65, updates, ...(durable ? { durable } : {}) });
const synced = (from: number, seq: number, seqEpoch = 65, epoch = 65): PeerMessage => ({ type: "synced", from, epoch, seq, seqEpoch });

function repliedReqNos(ready: Ready): number[] {
  return ready.send.flatMap((out) => (out.kind === "reply" ? [out.reqNo] : []));
}

function forwards(ready: Ready): Extract<PeerMessage, { type: "forward" }>[] {
  return ready.send.flatMap((out) => (out.kind === "peer" && out.message.type === "forward" ? [out.message] : []));
}

describe("the tail replies once the whole chain has synced", () => {
  test("neither its own sync nor its predecessor's alone releases the reply; both do, in either order", () => {
    for (const ownFirst of [true, false]) {
      const tail = member(2);
      const applied = tail.onPeerMessage(forward([create(2)], { seq: 1, epoch: 65 }), 30);
      expect(applied.persist.map((p) => p.kind)).toEqual(["log"]);
      expect(repliedReqNos(applied)).toEqual([]);
      const first = ownFirst ? tail.onDurable(2) : tail.onPeerMessage(forward([], { seq: 2, epoch: 65 }), 31);
      expect(repliedReqNos(first)).toEqual([]);
      // Applied but not acknowledged yet: a crash of every server may still lose it unanswered.
      expect([tail.state.appliedSeq, tail.acknowledgedSeq]).toEqual([2, 1]);
      const second = ownFirst ? tail.onPeerMessage(forward([], { seq: 2, epoch: 65 }), 31) : tail.onDurable(2);
      expect(repliedReqNos(second)).toEqual([2]);
      expect(tail.acknowledgedSeq).toBe(2);
    }
  });

  test("a reply that needs no sync of its own still waits behind a data update before it, and replies leave in order", () => {
    const tail = member(2);
    tail.onPeerMessage(forward([create(2), update(3, { type: "acquire", name: "d2", mode: "write", knownCreatedSeq: -1, cachedVersion: -1 })]), 30);
    expect(repliedReqNos(tail.onDurable(3))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(forward([], { seq: 2, epoch: 65 }), 31))).toEqual([2, 3]);
    // Nothing pending: a hold update resting on synced data is answered in its own step.
    const acquire = update(4, { type: "acquire", name: "d2", mode: "read", knownCreatedSeq: -1, cachedVersion: -1 });
    expect(tail.onPeerMessage(forward([acquire]), 32).send.some((out) => out.kind === "reply" && out.reqNo === 4)).toBe(true);
  });

  test("what a predecessor says of another history is not believed", () => {
    const tail = member(2);
    tail.onPeerMessage(forward([create(2)]), 30);
    tail.onDurable(2);
    expect(repliedReqNos(tail.onPeerMessage(forward([], { seq: 2, epoch: 129 }), 31))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(forward([], { seq: 5, epoch: 65 }), 32))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(forward([], { seq: 2, epoch: 65 }), 33))).toEqual([2]);
  });

  test("a notice lost in a cut is repaired by the predecessor's next heartbeat (sim seed 263005729 waited for ever)", () => {
    const tail = member(2);
    tail.onPeerMessage(forward([create(2)]), 30);
    tail.onDurable(2);
    // The empty forward saying "durable through 2" was lost; the tail has all updates, so no gap shows.
    const heartbeat = (durable?: { seq: number; epoch: number }): PeerMessage => ({
      type: "heartbeat", from: 1, epoch: 65, chain: [1, 2], status: "member", appliedSeq: 2, lastEpoch: 65, busyMs: 0, ...(durable ? { durable } : {}),
    });
    expect(repliedReqNos(tail.onPeerMessage(heartbeat(), 130))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(heartbeat({ seq: 2, epoch: 65 }), 230))).toEqual([2]);
  });

  test("a successor that asks where it stands (sync_reply) is told the durable point again", () => {
    const head = member(1);
    head.onPeerMessage({ type: "sync_reply", from: 2, epoch: 65, appliedSeq: 1, lastEpoch: 65 }, 25);
    head.onRequest({ session: 5, reqNo: 2, doneBelow: 0, op: { type: "create", name: "d", size: 1 } });
    expect(forwards(head.onDurable(2)).map((f) => f.durable)).toEqual([{ seq: 2, epoch: 65 }]);
    const again = head.onPeerMessage({ type: "sync_reply", from: 2, epoch: 65, appliedSeq: 2, lastEpoch: 65 }, 40);
    expect(forwards(again).map((f) => f.durable)).toEqual([{ seq: 2, epoch: 65 }]);
    // Its heartbeats to the successor say it as well.
    const beats = head.onTick(200).send.flatMap((out) => (out.kind === "peer" && out.message.type === "heartbeat" && out.to === 2 ? [out.message] : []));
    expect(beats.map((b) => b.type === "heartbeat" && b.durable)).toEqual([{ seq: 2, epoch: 65 }]);
  });

  test("a client that subscribes again gets a stored reply only once the chain has synced it", () => {
    const tail = member(2);
    tail.onPeerMessage(forward([create(2)]), 30);
    expect(repliedReqNos(tail.storedReplies(5, [2]))).toEqual([]);
    tail.onDurable(2);
    expect(repliedReqNos(tail.onPeerMessage(forward([], { seq: 2, epoch: 65 }), 31))).toEqual([2]);
  });
});

describe("a server forwards before its sync and tells its successor when it is durable", () => {
  test("the head's forward says how far it was durable before the update; its sync sends an empty forward saying more", () => {
    const head = member(1);
    head.onPeerMessage({ type: "sync_reply", from: 2, epoch: 65, appliedSeq: 1, lastEpoch: 65 }, 25);
    const sequenced = head.onRequest({ session: 5, reqNo: 2, doneBelow: 0, op: { type: "create", name: "d", size: 1 } });
    const [carried] = forwards(sequenced);
    expect(carried?.updates.map((u) => u.seq)).toEqual([2]);
    expect(carried?.durable).toEqual({ seq: 1, epoch: 65 });
    const synced = head.onDurable(2);
    expect(forwards(synced)).toEqual([{ type: "forward", from: 1, epoch: 65, prevEpoch: PREV_EPOCH_UNKNOWN, updates: [], durable: { seq: 2, epoch: 65 } }]);
    // Said once: another report of the same point sends nothing.
    expect(forwards(head.onDurable(2))).toEqual([]);
  });
});

describe("every server before the tail tells it directly how far it has synced (protocol 10)", () => {
  const CHAIN = [1, 2, 3];

  function syncedSent(ready: Ready): { to: number; seq: number }[] {
    return ready.send.flatMap((out) => (out.kind === "peer" && out.message.type === "synced" ? [{ to: out.to, seq: out.message.seq }] : []));
  }

  test("the tail replies on its own sync and each server's own notice, before the head's sync has crossed the middle", () => {
    const tail = member(3, CHAIN);
    // The middle's forward says only what the middle knew then: the head's sync had not reached it.
    tail.onPeerMessage(forward([create(2)], { seq: 1, epoch: 65 }, 2), 30);
    expect(repliedReqNos(tail.onDurable(2))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(synced(2, 2), 31))).toEqual([]);
    expect(tail.acknowledgedSeq).toBe(1);
    expect(repliedReqNos(tail.onPeerMessage(synced(1, 2), 32))).toEqual([2]);
    expect(tail.acknowledgedSeq).toBe(2);
  });

  test("one server's notice is not the chain's: without the middle's, only the forwarded notice counts", () => {
    const tail = member(3, CHAIN);
    tail.onPeerMessage(forward([create(2)], undefined, 2), 30);
    tail.onDurable(2);
    expect(repliedReqNos(tail.onPeerMessage(synced(1, 2), 31))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(forward([], { seq: 2, epoch: 65 }, 2), 32))).toEqual([2]);
  });

  test("a notice of another epoch, or about another history at that seq, is not believed", () => {
    const tail = member(3, CHAIN);
    tail.onPeerMessage(forward([create(2)], undefined, 2), 30);
    tail.onDurable(2);
    tail.onPeerMessage(synced(2, 2), 31);
    expect(repliedReqNos(tail.onPeerMessage(synced(1, 2, 65, 64), 32))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(synced(1, 2, 129), 33))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(synced(1, 2), 34))).toEqual([2]);
  });

  test("a notice that overtakes the forward it covers counts once that update arrives", () => {
    const tail = member(3, CHAIN);
    expect(repliedReqNos(tail.onPeerMessage(synced(1, 2), 30))).toEqual([]);
    expect(repliedReqNos(tail.onPeerMessage(synced(2, 2), 31))).toEqual([]);
    tail.onPeerMessage(forward([create(2)], undefined, 2), 32);
    expect(repliedReqNos(tail.onDurable(2))).toEqual([2]);
  });

  test("the head and the middle say each sync that moves their point to the tail, once; a head whose successor is the tail does not", () => {
    const head = member(1, CHAIN);
    head.onRequest({ session: 5, reqNo: 2, doneBelow: 0, op: { type: "create", name: "d", size: 1 } });
    expect(syncedSent(head.onDurable(2))).toEqual([{ to: 3, seq: 2 }]);
    expect(syncedSent(head.onDurable(2))).toEqual([]);
    const middle = member(2, CHAIN);
    middle.onPeerMessage(forward([create(2)]), 30);
    expect(syncedSent(middle.onDurable(2))).toEqual([{ to: 3, seq: 2 }]);
    const headOfTwo = member(1);
    headOfTwo.onRequest({ session: 5, reqNo: 2, doneBelow: 0, op: { type: "create", name: "d", size: 1 } });
    expect(syncedSent(headOfTwo.onDurable(2))).toEqual([]);
  });
});
