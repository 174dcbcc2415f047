/**
 * A replica (the core with its chain): the session monitor, a lone server's Readys,
 * Paxos-agreed configurations, and replicas fed the same updates ending identical.
 */
import { describe, expect, test } from "bun:test";
import { Random } from "../src/chaos/random";
import { type Output, Replica, SessionMonitor, StoreState, type Update } from "../src/core";
import { type Ready, isEmptyReady } from "../src/core/ready";
import { FRAME_HEADER_BYTES, type Op, type PageWrite, type Reply, decodeMessage, encodeMessage } from "../src/wire";
import { PS, NO_CACHE, REPLICA_OPTIONS, replyTo, codeOf, pageOf, observable, everything, request, logged, replied, singleServer } from "./helpers/core";

describe("SessionMonitor", () => {
  test("a session silent for longer than its timeout is reported once", () => {
    const monitor = new SessionMonitor();
    const live = new Map([[5, { timeoutMs: 1000 }]]);
    monitor.heard(5);
    const reports: number[] = [];
    for (let now = 0; now <= 5000; now += 100) {
      monitor.nowMs = now;
      for (const id of monitor.expired(live)) reports.push(now * 1000 + id);
    }
    expect(reports).toEqual([1100 * 1000 + 5]);
  });
});

describe("Replica", () => {
  test("it sequences requests without gaps, logs before it replies, and fills in the default timeout", () => {
    const replica = singleServer();
    const open = replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 0 }));
    expect(logged(open).map((u) => [u.seq, u.op])).toEqual([[1, { type: "open_session", timeoutMs: 1000 }]]);
    expect(replied(open)).toEqual([{ session: 5, reqNo: 1, reply: { type: "session", timeoutMs: 1000 } }]);
    // Persist before send: the update is disk work of the step, its reply goes out after it.
    expect(open.persist.map((p) => p.kind)).toEqual(["log"]);
    expect(open.send.map((o) => o.kind)).toEqual(["reply"]);
    const create = replica.onRequest(request(5, 2, { type: "create", name: "a", size: 1 }));
    expect(logged(create).map((u) => u.seq)).toEqual([2]);
    expect(replica.state.appliedSeq).toBe(2);
  });

  test("an unknown session gets ESESSION without consuming a sequence number", () => {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    const actions = replica.onRequest(request(6, 1, { type: "create", name: "a", size: 1 }));
    expect(logged(actions)).toEqual([]);
    expect(replied(actions).map((o) => [o.session, o.reqNo, codeOf(o.reply)])).toEqual([[6, 1, "ESESSION"]]);
    expect(replica.state.appliedSeq).toBe(1);
    expect(replica.state.data.size).toBe(0);
    expect(logged(replica.onRequest(request(5, 2, { type: "create", name: "a", size: 1 }))).map((u) => u.seq)).toEqual([2]);
  });

  test("a duplicate is answered from the stored reply and not sequenced again", () => {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    const op: Op = { type: "create", name: "a", size: 1 };
    const first = replica.onRequest(request(5, 2, op));
    expect(codeOf(replied(first)[0]!.reply)).toBe("created");
    const before = everything(replica.state);
    const again = replica.onRequest(request(5, 2, op));
    expect(logged(again)).toEqual([]);
    expect(replied(again)).toEqual(replied(first));
    expect(everything(replica.state)).toEqual(before);
  });

  test("a server that is not head sequences nothing", () => {
    const replica = new Replica({ selfId: 2, peers: [1, 2], ...REPLICA_OPTIONS }, new StoreState(16 * PS, PS));
    replica.onTick(0); // still booting: it waits to hear from server 1
    expect(replica.isHead).toBe(false);
    const actions = replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    expect(logged(actions)).toEqual([]);
    expect(replica.state.appliedSeq).toBe(0);
  });

  /** A head where session 5 holds "a" for writing (request 3) and session 6 waits for it. */
  function writerAndWaiter(): Replica {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    replica.onRequest(request(6, 1, { type: "open_session", timeoutMs: 1000 }));
    replica.onRequest(request(5, 2, { type: "create", name: "a", size: 1 }));
    replica.onRequest(request(5, 3, { type: "acquire", name: "a", mode: "write", ...NO_CACHE }));
    const wait = replica.onRequest(request(6, 2, { type: "acquire", name: "a", mode: "write", ...NO_CACHE }));
    expect(replied(wait).map((o) => codeOf(o.reply))).toEqual(["waiting"]);
    return replica;
  }

  test("a heartbeat confirming replies this history never produced ends the session and frees its hold", () => {
    const replica = writerAndWaiter();
    // Confirming what it has: nothing happens.
    expect(logged(replica.onClientHeartbeat(5, 4))).toEqual([]);
    // Replies up to request 4 (its release, say, acknowledged by a chain whose history lost).
    const actions = replica.onClientHeartbeat(5, 5);
    expect(logged(actions).map((u) => u.op)).toEqual([{ type: "expire_session", session: 5 }]);
    expect(replied(actions).map((o) => [o.session, codeOf(o.reply)])).toEqual([[6, "granted"]]);
    expect(replica.state.sessions.has(5)).toBe(false);
  });

  test("a silent session is expired exactly once, a heart-beating one never, and the waiter is granted in that step", () => {
    const replica = writerAndWaiter();
    const expiries: [number, Update][] = [];
    const repliesAt: [number, string][] = [];
    for (let now = 100; now <= 6000; now += 100) {
      if (now % 300 === 0) replica.onClientHeartbeat(6, 3);
      const actions = replica.onTick(now);
      for (const update of logged(actions)) expiries.push([now, update]);
      for (const o of replied(actions)) repliesAt.push([now, `${o.session}/${o.reqNo}:${codeOf(o.reply)}`]);
    }
    expect(expiries.map(([now, u]) => [now, u.session, u.op])).toEqual([[1100, 0, { type: "expire_session", session: 5 }]]);
    expect(repliesAt).toEqual([[1100, "6/2:granted"]]);
    expect(replica.state.sessions.has(5)).toBe(false);
    expect(replica.state.sessions.has(6)).toBe(true);
  });

  test("requests count as signs of life", () => {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    let reqNo = 1;
    for (let now = 100; now <= 5000; now += 100) {
      if (now % 500 === 0) replica.onRequest(request(5, ++reqNo, { type: "delete", name: "nope" }, reqNo));
      expect(logged(replica.onTick(now))).toEqual([]);
    }
    expect(replica.state.sessions.has(5)).toBe(true);
  });

  test("a session the head never heard from (state from before its start) gets a full timeout, then expires", () => {
    const state = new StoreState(16 * PS, PS);
    state.apply({ seq: 1, epoch: 1, session: 5, reqNo: 1, doneBelow: 0, op: { type: "open_session", timeoutMs: 1000 } });
    const replica = singleServer(state, 5000);
    const expiredAt: number[] = [];
    for (let now = 5000; now <= 8000; now += 100) {
      for (const update of logged(replica.onTick(now))) {
        expect(update).toMatchObject({ seq: 2, session: 0, op: { type: "expire_session", session: 5 } });
        expiredAt.push(now);
      }
    }
    expect(expiredAt).toEqual([6100]);
  });
});

// ---- replicas agree ----------------------------------------------------------

/** The update as a follower receives it: through the wire, sharing no memory with the head's. */
function overTheWire(update: Update): Update {
  const { session, reqNo, doneBelow, op } = update;
  const frame = encodeMessage({ type: "request", body: { session, reqNo, doneBelow, op } });
  const message = decodeMessage(frame[4]!, frame.slice(FRAME_HEADER_BYTES));
  if (message.type !== "request") throw new Error("not a request");
  return { ...update, op: message.body.op };
}

function checkInvariants(state: StoreState, where: string): void {
  const fail = (what: string) => {
    throw new Error(`${where}: ${what}`);
  };
  let used = 0;
  const owner = new Array<string | undefined>(state.pages.pageCount);
  for (const datum of state.data.values()) {
    used += datum.pageCount;
    for (let p = datum.firstPage; p < datum.firstPage + datum.pageCount; p++) {
      if (owner[p]) fail(`page ${p} in ${owner[p]} and ${datum.name}`);
      owner[p] = datum.name;
    }
    const writers = datum.holders.filter((h) => h.mode === "write").length;
    if (writers > 1 || (writers === 1 && datum.holders.length > 1)) fail(`${datum.name}: a writer shares the datum`);
    if (datum.queue.length > 0) {
      const front = datum.queue[0]!;
      if (datum.holders.length === 0) fail(`${datum.name}: waiters but no holder`);
      if (front.mode === "read" && writers === 0) fail(`${datum.name}: a reader waits with no writer holding`);
    }
    for (const hold of datum.holders) {
      if (state.holds.get(hold.id) !== hold) fail(`hold ${hold.id} not in the hold table`);
      if (!state.sessions.get(hold.session)?.holds.has(hold.id)) fail(`hold ${hold.id} not in its session`);
    }
    for (const waiter of datum.queue) {
      if (state.sessions.get(waiter.session)?.waiting.get(waiter.reqNo) !== datum.name) fail(`waiter ${waiter.session}/${waiter.reqNo} lost`);
    }
  }
  if (used + state.allocator.freePages() !== state.pages.pageCount) fail("pages leaked by the allocator");
  for (const run of state.allocator.freeRuns()) {
    for (let p = run.first; p < run.first + run.count; p++) if (owner[p]) fail(`free page ${p} belongs to ${owner[p]}`);
  }
  for (const hold of state.holds.values()) {
    if (!state.data.get(hold.name)?.holders.includes(hold)) fail(`hold ${hold.id} not on its datum`);
  }
  for (const session of state.sessions.values()) {
    for (const [reqNo, name] of session.waiting) {
      if (!state.data.get(name)?.queue.some((w) => w.session === session.id && w.reqNo === reqNo)) fail(`wait ${reqNo} not queued`);
    }
  }
}

interface Client {
  id: number;
  alive: boolean;
  nextReqNo: number;
  /** Every request sent, for resends. */
  sent: Map<number, Op>;
  /** Request numbers whose reply arrived. */
  answered: Set<number>;
  /** What the client has cached of each datum: the bytes it saw and their version. */
  cache: Map<string, { createdSeq: number; version: number; bytes: Uint8Array }>;
}

function runAgreement(seed: number, steps: number): { sequenced: number; grants: number; expiries: number; writes: number } {
  const random = new Random(seed);
  const PAGES = 24;
  const head = singleServer(new StoreState(PAGES * PS, PS));
  const follower = new StoreState(PAGES * PS, PS);
  const names = ["a", "b", "c", "d", "e"];
  /** The committed bytes of each datum, from the replies users received. */
  const model = new Map<string, Uint8Array>();
  const clients: Client[] = [];
  let nextSession = 1;
  const stats = { sequenced: 0, grants: 0, expiries: 0, writes: 0 };
  const newClient = (): Client => ({
    id: nextSession++,
    alive: true,
    nextReqNo: 1,
    sent: new Map(),
    answered: new Set(),
    cache: new Map(),
  });
  for (let i = 0; i < 4; i++) clients.push(newClient());
  let now = 0;

  const datumBytes = (state: StoreState, name: string) => {
    const datum = state.data.get(name)!;
    const out = new Uint8Array(datum.pageCount * PS);
    for (let i = 0; i < datum.pageCount; i++) out.set(state.pages.read(datum.firstPage + i), i * PS);
    return out;
  };

  /** Delivers replies to the model clients, checking each grant's pages against the model. */
  const deliver = (outputs: Output[], where: string) => {
    for (const { session, reqNo, reply } of outputs) {
      const client = clients.find((c) => c.id === session);
      if (!client) continue;
      if (reply.type !== "queued") client.answered.add(reqNo); // "queued" is not the answer yet
      const op = client.sent.get(reqNo);
      if (reply.type === "created" && op?.type === "create") {
        if (!model.has(op.name)) model.set(op.name, new Uint8Array(Math.ceil(op.size / PS) * PS));
      } else if (reply.type === "ok" && op?.type === "delete") {
        model.delete(op.name);
      } else if (reply.type === "granted") {
        stats.grants++;
        const cached = client.cache.get(reply.name);
        const base = reply.sendAfter === -1 ? new Uint8Array(Math.ceil(reply.size / PS) * PS) : cached?.bytes.slice();
        if (!base) throw new Error(`${where}: sendAfter ${reply.sendAfter} for a client with no cache of ${reply.name}`);
        const firstPage = reply.offset / PS;
        for (const page of head.state.pagesAfter(reply.offset, reply.size, reply.sendAfter)) base.set(page.bytes, (page.page - firstPage) * PS);
        // Linearizability of the data: what the client now sees is the last released value.
        expect([where, reply.name, Buffer.from(base).toString("hex")]).toEqual([where, reply.name, Buffer.from(model.get(reply.name)!).toString("hex")]);
        client.cache.set(reply.name, { createdSeq: reply.createdSeq, version: reply.version, bytes: base });
      } else if (reply.type === "released" && op?.type === "release" && op.pages.length > 0) {
        stats.writes++;
      }
    }
  };

  /** Applies on the model the pages of a release the state accepted (known after the step). */
  const noteRelease = (session: number, op: Op, reply: Reply | null, holdName: string | undefined) => {
    if (op.type !== "release" || reply?.type !== "released" || !holdName) return;
    const bytes = model.get(holdName)!;
    const firstPage = head.state.data.get(holdName)!.firstPage;
    for (const page of op.pages) bytes.set(page.bytes, (page.page - firstPage) * PS);
    const client = clients.find((c) => c.id === session)!;
    const cached = client.cache.get(holdName);
    if (cached && op.pages.length > 0) client.cache.set(holdName, { ...cached, version: reply.version, bytes: bytes.slice() });
  };

  const doneBelowOf = (client: Client) => {
    let n = 1;
    while (n < client.nextReqNo && client.answered.has(n)) n++;
    return n;
  };

  const randomOp = (client: Client): Op => {
    const state = head.state;
    const session = state.sessions.get(client.id);
    const myHolds = [...state.holds.values()].filter((h) => h.session === client.id);
    const roll = random.next();
    if (roll < 0.15) {
      const size = random.chance(0.1) ? random.pick([0, PAGES * PS + 1]) : 1 + random.int(4 * PS);
      return { type: "create", name: random.pick(names), size };
    }
    if (roll < 0.2) return { type: "delete", name: random.pick(names) };
    if (roll < 0.5) {
      const name = random.chance(0.95) ? random.pick(names) : "missing";
      const cached = client.cache.get(name);
      const cache = cached && random.chance(0.8) ? { knownCreatedSeq: cached.createdSeq, cachedVersion: cached.version } : NO_CACHE;
      return { type: "acquire", name, mode: random.chance(0.5) ? "read" : "write", ...cache };
    }
    if (roll < 0.8 && myHolds.length > 0) {
      const hold = random.pick(myHolds);
      const datum = state.data.get(hold.name)!;
      const pages: PageWrite[] = [];
      if (hold.mode === "write" || random.chance(0.05)) {
        for (let p = 0; p < datum.pageCount; p++) if (random.chance(0.4)) pages.push(pageOf(datum.firstPage + p, 1 + random.int(255)));
        if (pages.length === 0 && random.chance(0.8)) pages.push(pageOf(datum.firstPage + random.int(datum.pageCount), 1 + random.int(255)));
        if (random.chance(0.05)) pages.push(pageOf(random.int(PAGES), 0xbb)); // maybe outside the datum
      }
      return { type: "release", holdId: random.chance(0.03) ? hold.id + 1000 : hold.id, pages };
    }
    if (roll < 0.88 && session) {
      const waiting = [...session.waiting.keys()];
      const acquires = [...client.sent].filter(([, op]) => op.type === "acquire").map(([reqNo]) => reqNo);
      const target = waiting.length > 0 && random.chance(0.7) ? random.pick(waiting) : acquires.length > 0 ? random.pick(acquires) : 999;
      return { type: "cancel", acquireReqNo: target };
    }
    if (roll < 0.9) return { type: "close_session" };
    return { type: "acquire", name: random.pick(names), mode: "read", ...NO_CACHE };
  };

  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed} step ${step}`;
    now += 50;
    for (const client of clients) if (client.alive) head.onClientHeartbeat(client.id, 0);
    let actions: Ready = head.onTick(now);
    let op: Op | undefined;
    let sender: Client | undefined;
    let holdName: string | undefined;
    let resend = false;
    let resentReqNo = -1;
    if (isEmptyReady(actions)) {
      const choice = random.next();
      const live = clients.filter((c) => c.alive);
      if (choice < 0.01) {
        // A session nobody opened.
        actions = head.onRequest(request(10_000 + step, 1, { type: "delete", name: "a" }));
        expect([where, logged(actions).length, replied(actions).map((o) => codeOf(o.reply))]).toEqual([where, 0, ["ESESSION"]]);
      } else if (choice < 0.03 && live.length > 0) {
        random.pick(live).alive = false; // a client crashes: it will be expired
      } else if (live.length > 0) {
        sender = random.pick(live);
        const session = head.state.sessions.get(sender.id);
        let reqNo: number;
        if (!session) {
          op = { type: "open_session", timeoutMs: 1000 };
          reqNo = sender.nextReqNo++;
        } else if (sender.sent.size > 0 && random.chance(0.08)) {
          // A resend after a (simulated) failover: same number, same op.
          reqNo = random.pick([...sender.sent.keys()]);
          op = sender.sent.get(reqNo)!;
          resend = true;
          resentReqNo = reqNo;
        } else {
          op = randomOp(sender);
          reqNo = sender.nextReqNo++;
        }
        sender.sent.set(reqNo, op);
        if (op.type === "release") holdName = head.state.holds.get(op.holdId)?.name;
        const before = resend ? observable(head.state) : null;
        actions = head.onRequest(request(sender.id, reqNo, op, doneBelowOf(sender)));
        if (before) expect([where, observable(head.state)]).toEqual([where, before]);
        if (!resend) noteRelease(sender.id, op, replyTo(replied(actions), sender.id, reqNo), holdName);
      }
    }
    const updates = logged(actions);
    if (updates.length > 0) {
      // The follower gets its own copy of each update, in the same order, and must answer the same.
      const outputs = updates.flatMap((update) => follower.apply(overTheWire(update)));
      expect([where, outputs]).toEqual([where, replied(actions)]);
      stats.sequenced += updates.length;
      stats.expiries += updates.filter((u) => u.op.type === "expire_session").length;
    }
    // The client reuses its page buffers at once: the store must have copied them.
    if (op?.type === "release") for (const page of op.pages) page.bytes.fill(0xee);
    // A resent request's stored reply is one the client already had: it learns nothing new from it.
    deliver(
      replied(actions).filter((o) => !(resend && o.session === sender?.id && o.reqNo === resentReqNo)),
      where,
    );
    // Replace clients whose sessions are gone (expired or closed) with new ones.
    for (let i = 0; i < clients.length; i++) {
      const client = clients[i]!;
      if (!client.alive && !head.state.sessions.has(client.id)) clients[i] = newClient();
      else if (client.alive && client.nextReqNo > 1 && client.answered.has(1) && !head.state.sessions.has(client.id)) clients[i] = newClient();
    }
    checkInvariants(head.state, where);
    for (const [name, bytes] of model) {
      expect([where, name, Buffer.from(datumBytes(head.state, name)).equals(Buffer.from(bytes))]).toEqual([where, name, true]);
    }
    expect([where, [...model.keys()].sort()]).toEqual([where, [...head.state.data.keys()].sort()]);
    if (step % 50 === 0) expect([where, everything(follower)]).toEqual([where, everything(head.state)]);
  }
  expect(everything(follower)).toEqual(everything(head.state));
  return stats;
}

describe("--quorum majority: configurations agreed by Paxos", () => {
  const MAJORITY = { ...REPLICA_OPTIONS, peers: [1, 2, 3], quorum: "majority" as const };
  const sent = (ready: Ready) => ready.send.flatMap((o) => (o.kind === "peer" && o.message.type.startsWith("config") ? [o.message] : []));
  const heartbeat = (from: number) => ({ type: "heartbeat" as const, from, epoch: 0, chain: [], status: "booting" as const, appliedSeq: 0, lastEpoch: 0, busyMs: 0 });

  test("an acceptor's vote comes back from disk: a lower ballot is refused, a higher one is told what was accepted, and the vote is written before the promise leaves", () => {
    const accepted = { ballot: 129, epoch: 129, chain: [1, 3], baseEpoch: 65, formed: false };
    const replica = new Replica({ selfId: 3, ...MAJORITY }, new StoreState(16 * PS, PS), 0, { epoch: 65, chain: [1, 2, 3] }, { promised: 194, accepted });
    expect(sent(replica.onPeerMessage({ type: "config_prepare", from: 2, ballot: 130, baseEpoch: 65 }, 0))).toEqual([
      { type: "config_refuse", from: 3, ballot: 130, promised: 194 },
    ]);
    const actions = replica.onPeerMessage({ type: "config_prepare", from: 2, ballot: 258, baseEpoch: 65 }, 0);
    expect(sent(actions)).toEqual([{ type: "config_promise", from: 3, ballot: 258, configEpoch: 65, accepted }]);
    // Persist before send: the vote is disk work of the step, the promise goes out after it.
    expect(actions.persist).toEqual([{ kind: "vote", vote: { promised: 258, accepted } }]);
    expect(actions.send.some((o) => o.kind === "peer" && o.message.type === "config_promise")).toBe(true);
    // A proposal under an older ballot than the promise is refused too.
    expect(sent(replica.onPeerMessage({ type: "config_propose", from: 1, ballot: 194, epoch: 194, chain: [1], baseEpoch: 65, formed: false }, 0))[0]!.type).toBe("config_refuse");
  });

  test("a proposer completes a pending accepted proposal instead of its own, and its config makes nobody a member at once", () => {
    const replica = new Replica({ selfId: 1, ...MAJORITY }, new StoreState(16 * PS, PS));
    replica.onTick(0);
    replica.onPeerMessage(heartbeat(2), 10);
    replica.onPeerMessage(heartbeat(3), 10);
    const prepare = sent(replica.onTick(100)).filter((m) => m.type === "config_prepare");
    expect(prepare.length).toBe(2);
    const ballot = (prepare[0] as { ballot: number }).ballot;
    // Server 2 accepted server 3's proposal of the chain 3→2 (server 3 restarted since): it may have been chosen.
    const pending = { ballot: 67, epoch: 67, chain: [3, 2], baseEpoch: 0, formed: true };
    const propose = sent(replica.onPeerMessage({ type: "config_promise", from: 2, ballot, configEpoch: 0, accepted: pending }, 110));
    expect(propose).toEqual([
      { type: "config_propose", from: 1, ballot, epoch: 67, chain: [3, 2], baseEpoch: 0, formed: true },
      { type: "config_propose", from: 1, ballot, epoch: 67, chain: [3, 2], baseEpoch: 0, formed: true },
    ]);
    const commit = sent(replica.onPeerMessage({ type: "config_accept", from: 2, ballot }, 120));
    expect(commit).toContainEqual({ type: "config", from: 1, epoch: 67, chain: [3, 2], issued: false });
    expect(replica.config).toEqual({ epoch: 67, chain: [3, 2] });
    expect(replica.status).toBe("joining");
  });
});

describe("replicas fed the same updates", () => {
  for (const seed of [1, 2, 3, 0xc0ffee]) {
    test(`end in identical states, with every grant showing the last released bytes (seed ${seed})`, () => {
      const stats = runAgreement(seed, 500);
      // The run exercised what it claims to.
      expect(stats.sequenced).toBeGreaterThan(300);
      expect(stats.grants).toBeGreaterThan(40);
      expect(stats.writes).toBeGreaterThan(10);
      expect(stats.expiries).toBeGreaterThan(0);
    });
  }
});
