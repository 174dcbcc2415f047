/**
 * Connections shared by the stores of one process (src/client/shared.ts): one
 * dial per address, what comes back goes to the store it is for, and the
 * connection lives as long as one store uses it.
 */
import { describe, expect, test } from "bun:test";
import type { ConnectionEvents, ServerConnection } from "../src/client/host";
import { ConnectionPool } from "../src/client/shared";
import type { Message, Welcome } from "../src/wire";

const WELCOME: Welcome = { version: 1, serverId: 1, segmentSize: 1 << 20, pageSize: 4096, epoch: 3, chain: ["a:1", "b:2"] };

/** A server connection that records what is sent and lets the test play the server. */
class FakeConnection implements ServerConnection {
  readonly sent: Message[] = [];
  isOpen = true;
  active = false;
  readonly receivingFrame = false;
  readonly welcome = WELCOME;

  constructor(
    readonly address: string,
    readonly events: ConnectionEvents,
  ) {}

  send(message: Message): void {
    this.sent.push(message);
  }
  setActive(active: boolean): void {
    this.active = active;
  }
  close(): void {
    this.isOpen = false;
  }
  /** The server closes it. */
  drop(reason: string): void {
    this.isOpen = false;
    this.events.onClose(reason);
  }
}

function setUp() {
  const dialled: FakeConnection[] = [];
  const pool = new ConnectionPool(async (address, events) => {
    const connection = new FakeConnection(address, events);
    dialled.push(connection);
    return connection;
  });
  return { pool, dialled };
}

/** What one store's link hears. */
function listener() {
  const heard: Message[] = [];
  const closes: string[] = [];
  const events: ConnectionEvents = { onMessage: (message) => heard.push(message), onClose: (reason) => closes.push(reason) };
  return { heard, closes, events };
}

const request = (session: number, reqNo: number): Message => ({ type: "request", body: { session, reqNo, doneBelow: reqNo, op: { type: "create", name: "x", size: 8 } } });
const reply = (session: number, reqNo: number): Message => ({ type: "reply", body: { session, reqNo, reply: { type: "ok" }, pages: [] } });

describe("connections shared by a process's stores", () => {
  test("stores dialling one address at once share one connection, closed with the last store", async () => {
    const { pool, dialled } = setUp();
    const [one, two] = await Promise.all([pool.dial("a:1", listener().events, 100), pool.dial("a:1", listener().events, 100)]);
    const three = await pool.dial("a:1", listener().events, 100);
    expect(dialled.length).toBe(1);
    expect(pool.connections).toBe(1);
    one!.close();
    two!.close();
    expect(dialled[0]!.isOpen).toBe(true);
    expect(three.isOpen).toBe(true);
    three.close();
    expect(dialled[0]!.isOpen).toBe(false);
    expect(pool.connections).toBe(0);
    // The next store dials anew.
    await pool.dial("a:1", listener().events, 100);
    expect(dialled.length).toBe(2);
  });

  test("a reply and a recall reach only the store whose session they are for", async () => {
    const { pool, dialled } = setUp();
    const first = listener();
    const second = listener();
    const a = await pool.dial("a:1", first.events, 100);
    const b = await pool.dial("a:1", second.events, 100);
    a.send(request(11, 1));
    b.send(request(22, 1));
    const server = dialled[0]!;
    expect(server.sent.map((m) => m.type)).toEqual(["request", "request"]);
    server.events.onMessage(reply(22, 1));
    server.events.onMessage({ type: "recall", body: { session: 11, holdId: 5, name: "x" } });
    expect(first.heard.map((m) => m.type)).toEqual(["recall"]);
    expect(second.heard).toEqual([reply(22, 1)]);
  });

  test("a recall for a session no view has spoken for yet reaches every store (each keeps its own)", async () => {
    const { pool, dialled } = setUp();
    const other = listener();
    await pool.dial("a:1", other.events, 100);
    const first = listener();
    const a = await pool.dial("a:1", first.events, 100);
    a.send(request(11, 1));
    // The store of session 11 closes that view and takes a new one: the server still sends here.
    a.close();
    const second = listener();
    await pool.dial("a:1", second.events, 100);
    expect(dialled.length).toBe(1);
    const recall: Message = { type: "recall", body: { session: 11, holdId: 5, name: "x" } };
    dialled[0]!.events.onMessage(recall);
    expect(first.heard).toEqual([]);
    expect(second.heard).toEqual([recall]);
    expect(other.heard).toEqual([recall]);
  });

  test("query ids are renumbered per connection and answered to the store that asked, with its own id", async () => {
    const { pool, dialled } = setUp();
    const first = listener();
    const second = listener();
    const a = await pool.dial("a:1", first.events, 100);
    const b = await pool.dial("a:1", second.events, 100);
    a.send({ type: "query", body: { queryId: 1, kind: "list", name: "" } });
    b.send({ type: "query", body: { queryId: 1, kind: "stat", name: "x" } });
    const server = dialled[0]!;
    const ids = server.sent.map((m) => (m.type === "query" ? m.body.queryId : -1));
    expect(new Set(ids).size).toBe(2);
    server.events.onMessage({ type: "queryReply", body: { queryId: ids[1]!, json: "\"stat\"" } });
    server.events.onMessage({ type: "queryReply", body: { queryId: ids[0]!, json: "\"list\"" } });
    expect(first.heard).toEqual([{ type: "queryReply", body: { queryId: 1, json: "\"list\"" } }]);
    expect(second.heard).toEqual([{ type: "queryReply", body: { queryId: 1, json: "\"stat\"" } }]);
  });

  test("a new chain is told to every store, and a store dialling later sees it in its welcome", async () => {
    const { pool, dialled } = setUp();
    const first = listener();
    const second = listener();
    await pool.dial("a:1", first.events, 100);
    await pool.dial("a:1", second.events, 100);
    const config: Message = { type: "config", body: { epoch: 4, chain: ["b:2"] } };
    dialled[0]!.events.onMessage(config);
    expect(first.heard).toEqual([config]);
    expect(second.heard).toEqual([config]);
    const later = await pool.dial("a:1", listener().events, 100);
    expect(later.welcome).toEqual({ ...WELCOME, epoch: 4, chain: ["b:2"] });
  });

  test("a config in the welcome's chunk, before the dial returns, is in the welcome the store sees", async () => {
    const pool = new ConnectionPool(async (address, events) => {
      events.onMessage({ type: "config", body: { epoch: 9, chain: ["c:3"] } });
      return new FakeConnection(address, events);
    });
    const connection = await pool.dial("a:1", listener().events, 100);
    expect(connection.welcome).toEqual({ ...WELCOME, epoch: 9, chain: ["c:3"] });
  });

  test("when the server closes the connection every store hears it, and the next dial opens a new one", async () => {
    const { pool, dialled } = setUp();
    const first = listener();
    const second = listener();
    const a = await pool.dial("a:1", first.events, 100);
    await pool.dial("a:1", second.events, 100);
    dialled[0]!.drop("reset");
    expect(first.closes).toEqual(["reset"]);
    expect(second.closes).toEqual(["reset"]);
    expect(a.isOpen).toBe(false);
    a.send(request(11, 2)); // nothing leaves on a closed connection
    expect(dialled[0]!.sent).toEqual([]);
    const again = await pool.dial("a:1", listener().events, 100);
    expect(dialled.length).toBe(2);
    expect(again.isOpen).toBe(true);
  });

  test("the process is kept alive while any store has work in flight", async () => {
    const { pool, dialled } = setUp();
    const a = await pool.dial("a:1", listener().events, 100);
    const b = await pool.dial("a:1", listener().events, 100);
    a.setActive(true);
    b.setActive(true);
    a.setActive(false);
    expect(dialled[0]!.active).toBe(true);
    b.setActive(false);
    expect(dialled[0]!.active).toBe(false);
    b.setActive(true);
    b.close();
    expect(dialled[0]!.active).toBe(false);
  });

  test("a failed dial fails every store that waited for it, and the next dial tries again", async () => {
    let attempts = 0;
    const pool = new ConnectionPool(async (address, events) => {
      attempts++;
      if (attempts === 1) throw new Error("refused");
      return new FakeConnection(address, events);
    });
    const results = await Promise.allSettled([pool.dial("a:1", listener().events, 100), pool.dial("a:1", listener().events, 100)]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(attempts).toBe(1);
    const connection = await pool.dial("a:1", listener().events, 100);
    expect(connection.isOpen).toBe(true);
  });
});
