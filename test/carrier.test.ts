/**
 * The order in which a server carries out a turn's Readys (src/server/carrier.ts): what leaves
 * before its log write, what waits for the write, and with --fsync always for the sync. The
 * simulator checks what this order promises; these tests pin the order itself.
 */
import { describe, expect, test } from "bun:test";
import { type Persist, type Ready, type Replica, emptyReady } from "../src/core";
import { ReadyCarrier } from "../src/server/carrier";
import type { NodeHost } from "../src/server/host";
import { PREV_EPOCH_UNKNOWN, type Update } from "../src/wire";
import { scriptedHost } from "./helpers/node_host";

const update: Update = { seq: 7, epoch: 65, session: 5, reqNo: 3, doneBelow: 0, op: { type: "create", name: "d", size: 1 } };

/** A host that records, in order, each send (by connection; a message's parts once) and each step of its disk. */
function recordingHost(events: string[]): NodeHost {
  return scriptedHost({ now: 0 }, {
    send(conn) {
      if (events.at(-1) !== `send to ${conn}`) events.push(`send to ${conn}`);
    },
    defer: (fn) => fn(),
    disk: {
      write(items, written, unsynced) {
        events.push(`write ${items.map((item) => item.kind).join(",")}`);
        unsynced?.();
        events.push("sync");
        written();
      },
      waiting: false,
      spaceShort: () => false,
    },
  });
}

/** A turn that logs `persist`, forwards to peer 2 (connection 20) and replies to session 5 (connection 50). */
function turn(persist: Persist[]): Ready {
  return {
    persist,
    send: [
      { kind: "peer", to: 2, message: { type: "forward", from: 1, epoch: 65, prevEpoch: PREV_EPOCH_UNKNOWN, updates: [update] } },
      { kind: "reply", session: 5, reqNo: 3, reply: { type: "created", offset: 0, size: 1, createdSeq: 7 }, pages: [] },
    ],
    notes: [],
  };
}

function carry(awaitsSync: boolean, persist: Persist[]): string[] {
  const events: string[] = [];
  const replica = { awaitsSync, onDurable: () => emptyReady() } as unknown as Replica;
  const routes = { peerConn: () => 20, sessionConn: () => 50, clientConns: () => [], configForClients: () => ({ epoch: 65, chain: [] }) };
  const carrier = new ReadyCarrier(replica, recordingHost(events), routes, {});
  carrier.perform(turn(persist));
  return events;
}

describe("a server's turn leaves in order", () => {
  for (const awaitsSync of [false, true]) {
    const mode = awaitsSync ? "--fsync always" : "--fsync off";
    test(`${mode}: the forwards that lead a batch of log records leave before the write; the reply after it`, () => {
      expect(carry(awaitsSync, [{ kind: "log", update }])).toEqual(["send to 20", "write log", "sync", "send to 50"]);
    });

    test(`${mode}: a batch that also holds a configuration forwards only once it is written`, () => {
      const events = carry(awaitsSync, [{ kind: "log", update }, { kind: "config", config: { epoch: 65, chain: [1, 2] } }]);
      // --fsync always still sends it before the sync (the successor syncs meanwhile).
      expect(events).toEqual(awaitsSync ? ["write log,config", "send to 20", "sync", "send to 50"] : ["write log,config", "sync", "send to 20", "send to 50"]);
    });
  }
});
