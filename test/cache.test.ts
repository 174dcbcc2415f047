/** A client's cached copy is trusted only when it matches a version the servers have. */
import { expect, test } from "bun:test";
import { StoreState } from "../src/core";
import type { Op, Reply } from "../src/wire";

test("a cached version newer than the datum's (a history the servers lost) gets every page again", () => {
  const state = new StoreState(1 << 20, 4096);
  let seq = 0;
  const apply = (op: Op): Reply => {
    const outputs = state.apply({ seq: ++seq, epoch: 65, session: 9, reqNo: seq, doneBelow: seq, op });
    return outputs.find((output) => output.reqNo === seq)!.reply;
  };
  apply({ type: "open_session", timeoutMs: 10_000 });
  const created = apply({ type: "create", name: "c", size: 8192 }) as Extract<Reply, { type: "created" }>;
  const acquire = (cachedVersion: number) =>
    apply({ type: "acquire", name: "c", mode: "read", knownCreatedSeq: created.createdSeq, cachedVersion }) as Extract<Reply, { type: "granted" }>;
  const release = (holdId: number) => apply({ type: "release", holdId, pages: [] });

  const current = acquire(created.createdSeq);
  expect(current.sendAfter).toBe(created.createdSeq); // the cache is current: no page travels
  expect(state.pagesAfter(current.offset, current.size, current.sendAfter, current.version)).toEqual([]);
  release(current.holdId);

  const fromLostHistory = acquire(created.createdSeq + 100);
  expect(fromLostHistory.sendAfter).toBe(-1);
  expect(state.pagesAfter(fromLostHistory.offset, fromLostHistory.size, fromLostHistory.sendAfter, fromLostHistory.version)).toHaveLength(2);
});
