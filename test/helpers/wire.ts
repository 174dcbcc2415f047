/**
 * Every op, reply and message, and small tools, for the wire's tests (wire.test.ts,
 * frame.test.ts) and the fuzz's corpus (helpers/fuzz.ts).
 */
import { expect } from "bun:test";
import { FRAME_HEADER_BYTES, helloMessage, type Message, type Op, type Reply, WireError, decodeMessage } from "../../src/wire";
import { Random } from "../../src/chaos/random";

/** "0a 00 ff # comment" → bytes; spaces, `|` and `#` comments (to the end of a line) are for the reader. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/#.*$/gm, "").replace(/[\s|]/g, "");
  if (digits.length % 2 !== 0) throw new Error(`odd hex: ${text}`);
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

export function toHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** Decodes one whole encoded frame (header included). */
export function decodeFrame(frame: Uint8Array): Message {
  return decodeMessage(frame[FRAME_HEADER_BYTES - 1]!, frame.subarray(FRAME_HEADER_BYTES));
}

/** Runs `fn` and returns what it threw (fails the test when it does not throw). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

export function expectWireError(fn: () => unknown, message?: RegExp): void {
  const error = thrown(fn);
  expect(error).toBeInstanceOf(WireError);
  if (message) expect((error as Error).message).toMatch(message);
}

/** Tiny seeded PRNG (mulberry32): a failure replays from its seed. */
export function prng(seed: number): () => number {
  const random = new Random(seed);
  return () => random.next();
}

export const page = (index: number, fill: number, length = 16) => ({ page: index, bytes: new Uint8Array(length).fill(fill) });

// ---- every op, every reply, every message ----------------------------------

export const ALL_OPS: Op[] = [
  { type: "open_session", timeoutMs: 10_000 },
  { type: "close_session" },
  { type: "create", name: "compteur", size: 4 },
  { type: "create", name: "ünïcødé €", size: 2 ** 53 - 1 },
  { type: "delete", name: "compteur" },
  { type: "acquire", name: "compteur", mode: "read", knownCreatedSeq: -1, cachedVersion: -1 },
  { type: "acquire", name: "x", mode: "write", knownCreatedSeq: 17, cachedVersion: 2 ** 40 + 3 },
  { type: "acquire", name: "c", mode: "read", knownCreatedSeq: 4, cachedVersion: 9, cache: true },
  { type: "release", holdId: 9, pages: [] },
  { type: "release", holdId: 2 ** 33 + 1, pages: [page(0, 0xaa), page(4_000_000, 0x55, 4096), { page: 7, bytes: new Uint8Array(0) }] },
  { type: "cancel", acquireReqNo: 0xffff_ffff },
  { type: "expire_session", session: 2 ** 52 + 5 },
  { type: "refused", code: "ENOSPC", message: "the disk of server 1 is full", holdId: 2 ** 33 + 1 },
  { type: "open_session", timeoutMs: 0 },
  { type: "checkpoint" },
  { type: "barrier" },
];

export const ALL_REPLIES: Reply[] = [
  { type: "ok" },
  { type: "session", timeoutMs: 1234 },
  { type: "created", offset: 2 ** 40, size: 5000, createdSeq: 77 },
  {
    type: "granted",
    holdId: 3,
    mode: "read",
    name: "compteur",
    offset: 8192,
    size: 4,
    createdSeq: 5,
    version: 9,
    sendAfter: -1,
  },
  {
    type: "granted",
    holdId: 2 ** 53 - 1,
    mode: "write",
    name: "é",
    offset: 0,
    size: 1,
    createdSeq: 1,
    version: 1,
    sendAfter: 1,
  },
  { type: "released", version: 42, cached: false },
  { type: "released", version: 7, cached: true },
  { type: "queued" },
  { type: "error", code: "ENOENT", message: 'no datum named "x" — créez-la d’abord' },
  { type: "checkpointed", seq: 1000 },
];

export const HELLO_CLIENT = helloMessage("client", 0, new Uint8Array(32).fill(0xab));

export const ALL_MESSAGES: Message[] = [
  HELLO_CLIENT,
  { type: "hello", body: { version: 7, role: "server", senderId: 3, nonce: new Uint8Array(32).fill(9) } },
  { type: "challenge", body: { nonce: new Uint8Array(32).fill(1), proof: new Uint8Array(32).fill(2) } },
  { type: "auth", body: { proof: new Uint8Array(32).fill(3) } },
  {
    type: "welcome",
    body: { version: 1, serverId: 2, segmentSize: 256 * 1024 * 1024, pageSize: 4096, epoch: 12, chain: ["127.0.0.1:7401", "[::1]:7402"] },
  },
  { type: "welcome", body: { version: 1, serverId: 1, segmentSize: 4096, pageSize: 4096, epoch: 0, chain: [] } },
  { type: "welcome", body: { version: 8, serverId: 1, segmentSize: 4096, pageSize: 4096, epoch: 65, chain: [], notServing: "waiting for server(s) 2,3 of the last chain: they may hold acknowledged updates" } },
  ...ALL_OPS.map((op, i): Message => ({ type: "request", body: { session: 1 + i * 1_000_000_007, reqNo: i, doneBelow: i, op } })),
  ...ALL_REPLIES.map((reply, i): Message => ({ type: "reply", body: { session: 99, reqNo: i + 1, reply, pages: [] } })),
  { type: "reply", body: { session: 99, reqNo: 5, reply: ALL_REPLIES[3]!, pages: [page(2, 1), page(3, 2)] } },
  { type: "heartbeat", body: { session: 2 ** 53 - 1, doneBelow: 2 ** 32 - 1 } },
  { type: "query", body: { queryId: 1, kind: "list", name: "" } },
  { type: "query", body: { queryId: 2, kind: "stat", name: "compteur" } },
  { type: "query", body: { queryId: 3, kind: "status", name: "" } },
  { type: "queryReply", body: { queryId: 4, json: '{"a":[1,2],"é":"€"}' } },
  { type: "subscribe", body: { session: 8, waiting: [] } },
  { type: "subscribe", body: { session: 8, waiting: [1, 2, 0xffff_ffff] } },
  { type: "recall", body: { session: 2 ** 53 - 1, holdId: 2 ** 24 + 5, name: "compteur" } },
  { type: "error", body: { code: "EPROTO", message: "bad frame" } },
  { type: "config", body: { epoch: 2 ** 40 + 17, chain: ["10.0.0.1:7401", "10.0.0.2:7401", "10.0.0.3:7401"] } },
  { type: "config", body: { epoch: 0, chain: [] } },
];
