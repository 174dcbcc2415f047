/**
 * The client's session logic (src/client: ClusterLink, ClientStore) over a
 * scripted host: one fake server whose answers the test chooses, virtual
 * timers, the simulator's page map. For orders of events a live cluster
 * seldom gives; each case was first found by the simulator (test/sim.test.ts).
 */
import { describe, expect, test } from "bun:test";
import type { ClientHost, ConnectionEvents, ServerConnection, TimerHandle } from "../src/client/host";
import { ClientStore } from "../src/client/session";
import { PROTOCOL_VERSION } from "../src/constants";
import { PageMemory } from "../src/sim/memory";
import type { Message, Reply, ReplyMessage, Request } from "../src/wire";

const PAGE = 64;

/** One server at address "1", head and tail; `answer` says what it replies to each request (undefined: nothing yet). */
class ScriptedHost implements ClientHost {
  now = 0;
  readonly sent: Message[] = [];
  /** Connections dialled so far (a refresh dials again). */
  dials = 0;
  /** Whether the connection is in the middle of receiving a frame. */
  receivingFrame = false;
  private readonly timers: { at: number; every: number; fn: () => void; live: boolean }[] = [];
  private events: ConnectionEvents | null = null;
  private nextSession = 100;

  constructor(
    private readonly answer: (request: Request) => Reply | undefined,
    private readonly segmentSize = 16 * PAGE,
  ) {}

  nowMs(): number {
    return this.now;
  }

  after(ms: number, fn: () => void): TimerHandle {
    return this.timer(ms, 0, fn);
  }

  every(ms: number, fn: () => void): TimerHandle {
    return this.timer(ms, ms, fn);
  }

  newSessionId(): number {
    return this.nextSession++;
  }

  dial(address: string, events: ConnectionEvents): Promise<ServerConnection> {
    this.events = events;
    this.dials++;
    const host = this;
    const welcome = { version: PROTOCOL_VERSION, serverId: 1, segmentSize: host.segmentSize, pageSize: PAGE, epoch: 65, chain: ["1"] };
    return Promise.resolve({
      address,
      welcome,
      isOpen: true,
      get receivingFrame() {
        return host.receivingFrame;
      },
      send(message: Message) {
        host.sent.push(message);
        if (message.type !== "request") return;
        const reply = host.answer(message.body);
        if (reply) queueMicrotask(() => host.reply(message.body, reply));
      },
      setActive() {},
      close() {},
    });
  }

  /** The server answers `request` now. */
  reply(request: Request, reply: Reply): void {
    const body: ReplyMessage = { session: request.session, reqNo: request.reqNo, reply, pages: [] };
    this.events?.onMessage({ type: "reply", body });
  }

  /** The server says why it closes the connection, then closes it. */
  error(code: string, message: string): void {
    const events = this.events;
    events?.onMessage({ type: "error", body: { code, message } });
    events?.onClose("closed by the server");
  }

  /** Moves the clock, running the timers that fall due. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.now = due.at;
      if (due.every > 0) due.at += due.every;
      else due.live = false;
      due.fn();
    }
    this.now = end;
  }

  requests(): Request[] {
    return this.sent.flatMap((m) => (m.type === "request" ? [m.body] : []));
  }

  private timer(ms: number, every: number, fn: () => void): TimerHandle {
    const timer = { at: this.now + ms, every, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => (timer.live = false) };
  }
}

function granted(holdId: number, name: string): Reply {
  return { type: "granted", holdId, mode: "write", name, offset: 0, size: 4, createdSeq: 1, version: 1, sendAfter: -1 };
}

function store(host: ScriptedHost): ClientStore {
  return new ClientStore({ servers: ["1"] }, host, (size, pageSize) => new PageMemory(size, pageSize, (message) => {
    throw new Error(message);
  }));
}

describe("client session logic over a scripted server", () => {
  // Sim seed 1258: a process stopped past twice its session timeout hears ETIMEDOUT from the server.
  test("a server's ETIMEDOUT for silence closes the connection, not the store", async () => {
    const host = new ScriptedHost((request) => (request.op.type === "open_session" ? { type: "session", timeoutMs: 60_000 } : request.op.type === "create" ? { type: "created", offset: 0, size: 4, createdSeq: 2 } : undefined));
    const client = store(host);
    await client.open();
    host.error("ETIMEDOUT", "nothing received within the session timeout: connection closed");
    expect(client.isOpen).toBe(true);
    await client.create("d", 4); // the link found the chain again
    host.error("EPROTO", "a refusal");
    expect(client.isOpen).toBe(false);
  });

  // Sim seeds 162000289, 162001442: two subscribes of one session crossed on two connections; the
  // tail bound the session to the closed one and dropped the grant of a queued acquire.
  test("a queued acquire's recheck subscribes again at the tail, which brings back its stored grant", async () => {
    const host = new ScriptedHost((request) => (request.op.type === "open_session" ? { type: "session", timeoutMs: 60_000 } : request.op.type === "acquire" ? { type: "queued" } : undefined));
    const client = store(host);
    await client.open();
    const access = client.accessReadWrite("d");
    await Bun.sleep(0);
    const acquire = host.requests().find((r) => r.op.type === "acquire")!;
    const subscribes = () => host.sent.filter((m) => m.type === "subscribe").map((m) => (m.type === "subscribe" ? m.body.waiting : []));
    expect(subscribes()).toEqual([[]]);
    host.advance(3_500);
    expect(subscribes()).toEqual([[], [acquire.reqNo]]);
    // What the tail sends on that subscribe: the stored grant.
    host.reply(acquire, granted(7, "d"));
    expect((await access).length).toBe(4);
  });

  // test/server.test.ts's 64 MiB grant timed out under load: 1.5 s after the acquire, with the
  // grant still arriving, the client looked for the chain again and the tail sent it anew.
  test("a request is not taken for unanswered while its answer is arriving", async () => {
    const host = new ScriptedHost((request) => (request.op.type === "open_session" ? { type: "session", timeoutMs: 60_000 } : undefined));
    const client = store(host);
    await client.open();
    void client.accessReadWrite("d").catch(() => {});
    await Bun.sleep(0);
    const dialled = host.dials;
    host.receivingFrame = true;
    host.advance(5_000);
    expect(host.dials).toBe(dialled);
    // Nothing arriving any more: now it is unanswered.
    host.receivingFrame = false;
    host.advance(2_000);
    await Bun.sleep(0);
    expect(host.dials).toBeGreaterThan(dialled);
  });

  // A 64 MiB write release on a busy chain takes more than 1.5 s to be answered, and taken for
  // unanswered it was sent again, 64 MiB more on that chain.
  test("a large write release gets longer to be answered before the client looks for the chain again", async () => {
    const SIZE = 16 * 1024 * 1024;
    const host = new ScriptedHost((request) => {
      if (request.op.type === "open_session") return { type: "session", timeoutMs: 60_000 };
      if (request.op.type === "create") return { type: "created", offset: 0, size: SIZE, createdSeq: 2 };
      if (request.op.type === "acquire") return { ...granted(7, "big"), size: SIZE };
      return undefined; // the release: no answer yet
    }, SIZE);
    const client = store(host);
    await client.open();
    await client.create("big", SIZE);
    const view = await client.accessReadWrite("big");
    view.fill(9);
    void client.releaseReadWrite(view).catch(() => {});
    await Bun.sleep(0);
    expect(host.requests().at(-1)?.op.type).toBe("release");
    const dialled = host.dials;
    host.advance(2_250); // past 1.5 s, within 1.5 s + 16 × 64 ms
    await Bun.sleep(0);
    expect(host.dials).toBe(dialled);
    host.advance(750);
    await Bun.sleep(0);
    expect(host.dials).toBeGreaterThan(dialled);
  });

  // Sim seed 223011839: after a crash of every server rolled back the grant the client was using,
  // the servers applied its resent acquire again and granted it a second hold, which nobody released.
  test("a grant that answers no waiting request, for no hold in use, is given back", async () => {
    const host = new ScriptedHost((request) => (request.op.type === "open_session" ? { type: "session", timeoutMs: 60_000 } : undefined));
    const client = store(host);
    await client.open();
    const session = host.requests()[0]!.session;
    host.reply({ session, reqNo: 42, doneBelow: 1, op: { type: "acquire", name: "d", mode: "write", knownCreatedSeq: -1, cachedVersion: -1, cache: false } }, granted(9, "d"));
    await Bun.sleep(0);
    const releases = host.requests().filter((r) => r.op.type === "release");
    expect(releases.map((r) => r.op)).toEqual([{ type: "release", holdId: 9, pages: [] }]);
  });

  // Sim seed 848400009 (and once test/cached_process.test.ts): after a failover the acquire's answer
  // and its resend's came in one read; the duplicate, handled before the caller's continuation had
  // mapped the hold, was given back as stray, and the use went on with no hold at the servers.
  test("a grant answered twice in one read is the acquire's hold, not a stray one", async () => {
    const host = new ScriptedHost((request) => (request.op.type === "open_session" ? { type: "session", timeoutMs: 60_000 } : undefined));
    const client = store(host);
    await client.open();
    const access = client.accessReadWrite("d");
    await Bun.sleep(0);
    const acquire = host.requests().find((r) => r.op.type === "acquire")!;
    host.reply(acquire, granted(7, "d"));
    host.reply(acquire, granted(7, "d"));
    const view = await access;
    expect(host.requests().filter((r) => r.op.type === "release")).toEqual([]);
    // A second grant of the same acquire (applied again after a rollback) is still given back.
    host.reply(acquire, granted(8, "d"));
    await Bun.sleep(0);
    expect(host.requests().filter((r) => r.op.type === "release").map((r) => r.op)).toEqual([{ type: "release", holdId: 8, pages: [] }]);
    void client.releaseReadWrite(view).catch(() => {});
    await Bun.sleep(0);
    expect(host.requests().at(-1)?.op).toMatchObject({ type: "release", holdId: 7 });
  });

  // Sim seed 167003449: the give-back of an old session's cached grant was answered ESESSION after
  // the datum had been granted again to the new session, and the write release then sent nothing.
  test("an ESESSION for an old session's give-back leaves the new session's hold of the same datum alone", async () => {
    let oldRelease: Request | null = null;
    let sessions = 0;
    const host = new ScriptedHost((request) => {
      const op = request.op;
      if (op.type === "open_session") return { type: "session", timeoutMs: 60_000 };
      if (op.type === "acquire" && op.name === "a") return granted(sessions++ === 0 ? 10 : 30, "a");
      if (op.type === "acquire") return { type: "error", code: "ESESSION", message: "no such session" };
      if (op.type === "release" && op.holdId === 10) {
        oldRelease = request; // answered below, late
        return undefined;
      }
      if (op.type === "release") return { type: "released", version: 2, cached: false };
      return undefined;
    });
    const client = store(host);
    await client.open();
    const first = await client.accessReadWrite("a");
    first[0] = 1;
    const firstRelease = client.releaseReadWrite(first).catch((error) => error);
    await Bun.sleep(0);
    expect(oldRelease).not.toBeNull();
    // The session is lost (another request hears ESESSION); the next access opens a new one.
    expect(await client.accessReadWrite("b").catch((error) => error.code)).toBe("ESESSION");
    const again = await client.accessReadWrite("a");
    expect(client.sessionId).not.toBe(oldRelease!.session);
    // Now the old session's release is answered: its session is gone.
    host.reply(oldRelease!, { type: "error", code: "ESESSION", message: "no such session" });
    expect((await firstRelease).code).toBe("ESESSION");
    again[0] = 2;
    await client.releaseReadWrite(again);
    const releases = host.requests().filter((r) => r.op.type === "release" && r.op.holdId === 30);
    expect(releases.map((r) => r.session)).toEqual([client.sessionId]);
  });

  // Sim seed 293003982: a grant that needed no sync was rolled back by a power loss of every
  // server; the restarted chain granted the same acquire again (a hold the client never heard
  // of), the client's release of its hold got ESTALE, and the session kept the new hold for ever.
  test("a release the servers do not know withdraws the acquire that was granted it, before the next request", async () => {
    const host = new ScriptedHost((request) => {
      const op = request.op;
      if (op.type === "open_session") return { type: "session", timeoutMs: 60_000 };
      if (op.type === "acquire") return granted(5, "d");
      if (op.type === "release") return { type: "error", code: "ESTALE", message: "hold 5 is not a hold of this session" };
      if (op.type === "cancel") return { type: "ok" };
      return undefined;
    });
    const client = new ClientStore({ servers: ["1"], cacheHolds: false }, host, (size, pageSize) => new PageMemory(size, pageSize, (message) => {
      throw new Error(message);
    }));
    await client.open();
    const view = await client.accessReadWrite("d");
    const acquire = host.requests().find((r) => r.op.type === "acquire")!;
    expect((await client.releaseReadWrite(view).catch((error) => error)).code).toBe("ESTALE");
    await client.accessRead("d").then((again) => client.releaseRead(again)).catch(() => {});
    const after = host.requests().filter((r) => r.reqNo > acquire.reqNo).map((r) => r.op.type);
    expect(after.slice(0, 3)).toEqual(["release", "cancel", "acquire"]);
    expect(host.requests().find((r) => r.op.type === "cancel")!.op).toEqual({ type: "cancel", acquireReqNo: acquire.reqNo });
  });
});
