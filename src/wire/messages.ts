/**
 * The messages between clients and servers, and their binary encodings.
 * One encode/decode pair per message; page bytes travel raw, never as JSON
 * (JSON carries only small metadata answers: list, stat, status).
 */
import { PROTOCOL_VERSION } from "../constants";
import { Reader, Writer, WireError, sizeOf } from "./codec";
import { FRAME_HEADER_BYTES, writeFrameHeader } from "./frame";

export const MAGIC = 0x52545350; // "PSTR" little endian

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export const MessageType = {
  hello: 1,
  welcome: 2,
  request: 3,
  reply: 4,
  heartbeat: 5,
  query: 6,
  queryReply: 7,
  subscribe: 8,
  error: 9,
  config: 10,
  challenge: 11,
  auth: 12,
  recall: 13,
} as const;

/** Bytes of the nonces and proofs of the authentication handshake. */
export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;

export type Mode = "read" | "write";

/** A page of a write release: its absolute index in the segment and its bytes. */
export interface PageWrite {
  page: number;
  bytes: Uint8Array;
}

/** An operation on the replicated state, as a client asks it. */
export type Op =
  | { type: "open_session"; timeoutMs: number }
  | { type: "close_session" }
  | { type: "create"; name: string; size: number }
  | { type: "delete"; name: string }
  /**
   * knownCreatedSeq/cachedVersion say which bytes the client has cached (-1: none).
   * `cache`: the client keeps the hold after its release while nobody waits (a cached grant,
   * docs/protocol.md#cached-holds); encoded as bit 0x80 of the mode byte, so older logs decode.
   */
  | { type: "acquire"; name: string; mode: Mode; knownCreatedSeq: number; cachedVersion: number; cache?: boolean }
  | { type: "release"; holdId: number; pages: PageWrite[] }
  /** Withdraws the acquire sent as request `acquireReqNo`: dequeued, or released if already granted. */
  | { type: "cancel"; acquireReqNo: number }
  /** Issued by the head when a session stops heart-beating. */
  | { type: "expire_session"; session: number }
  /** Every server writes a checkpoint when it applies this: a recovery line at one seq. */
  | { type: "checkpoint" }
  /**
   * Put by the head in place of a request it refuses for a reason of its own
   * (its disk is full): sequenced like the request, so the session's request
   * numbers stay without a gap, and answered with this error by every replica.
   * A refused release (holdId > 0) still ends its hold, without its data: the
   * client let go of it when it sent the release.
   */
  | { type: "refused"; code: string; message: string; holdId: number };

export type OpType = Op["type"];

/** An operation with its place in the total order. Session 0 is the system (expiries). */
export interface Update {
  seq: number;
  /** The epoch of the configuration whose head sequenced it. */
  epoch: number;
  session: number;
  reqNo: number;
  doneBelow: number;
  op: Op;
}

export type Reply =
  | { type: "ok" }
  | { type: "session"; timeoutMs: number }
  | { type: "created"; offset: number; size: number; createdSeq: number }
  | {
      type: "granted";
      holdId: number;
      mode: Mode;
      name: string;
      offset: number;
      size: number;
      createdSeq: number;
      version: number;
      /** Pages whose last write is after this sequence number travel with the grant (-1: all). */
      sendAfter: number;
    }
  /** `cached`: the session keeps the hold as its cached grant (nobody waited); else it is gone. */
  | { type: "released"; version: number; cached: boolean }
  /** An acquire is in the datum's queue (committed): the grant follows later. */
  | { type: "queued" }
  /** Every server of the chain wrote a checkpoint at this sequence number. */
  | { type: "checkpointed"; seq: number }
  | { type: "error"; code: string; message: string };

export interface Hello {
  version: number;
  role: "client" | "server";
  /** The sender's server id, for role "server"; 0 for clients. */
  senderId: number;
  /** Fresh random bytes: a server with a secret proves it knows it over them. */
  nonce: Uint8Array;
}

/** A server with a secret answers hello with this: its proof, and a nonce for ours. */
export interface Challenge {
  nonce: Uint8Array;
  proof: Uint8Array;
}

export interface Welcome {
  version: number;
  serverId: number;
  segmentSize: number;
  pageSize: number;
  epoch: number;
  /** Addresses in chain order, head first. */
  chain: string[];
}

export interface Request {
  session: number;
  reqNo: number;
  /** The client has every reply for request numbers below this: the server may forget them. */
  doneBelow: number;
  op: Op;
}

export interface ReplyMessage {
  session: number;
  reqNo: number;
  reply: Reply;
  /** For a grant: the datum's pages the client lacks. */
  pages: PageWrite[];
}

export type QueryKind = "list" | "stat" | "status";

export interface Query {
  queryId: number;
  kind: QueryKind;
  name: string;
}

export interface QueryReply {
  queryId: number;
  /** JSON of the answer, or of { error: { code, message } }. */
  json: string;
}

export interface Subscribe {
  session: number;
  /** Requests the client still waits on: the server resends the replies it has. */
  waiting: number[];
}

/** Sent to a client whose request reached the wrong server, or when the chain changed. */
export interface ConfigMessage {
  epoch: number;
  /** Addresses in chain order, head first; empty while no chain is serving. */
  chain: string[];
}

export interface ErrorMessage {
  code: string;
  message: string;
}

export type Message =
  | { type: "hello"; body: Hello }
  | { type: "challenge"; body: Challenge }
  | { type: "auth"; body: { proof: Uint8Array } }
  | { type: "welcome"; body: Welcome }
  | { type: "request"; body: Request }
  | { type: "reply"; body: ReplyMessage }
  | { type: "heartbeat"; body: { session: number; doneBelow: number } }
  | { type: "query"; body: Query }
  | { type: "queryReply"; body: QueryReply }
  | { type: "subscribe"; body: Subscribe }
  | { type: "error"; body: ErrorMessage }
  | { type: "config"; body: ConfigMessage }
  /** The head asks the session to give back its cached grant `holdId` of `name`: another client waits. */
  | { type: "recall"; body: Recall };

export interface Recall {
  session: number;
  holdId: number;
  name: string;
}

// ---- op and reply codes -------------------------------------------------

const OP_CODES: Record<OpType, number> = {
  open_session: 1,
  close_session: 2,
  create: 3,
  delete: 4,
  acquire: 5,
  release: 6,
  cancel: 7,
  expire_session: 8,
  checkpoint: 9,
  refused: 10,
};
const OP_BY_CODE = invert(OP_CODES);

const REPLY_CODES: Record<Reply["type"], number> = {
  ok: 1,
  session: 2,
  created: 3,
  granted: 4,
  released: 5,
  error: 6,
  queued: 7,
  checkpointed: 8,
};
const REPLY_BY_CODE = invert(REPLY_CODES);

const QUERY_CODES: Record<QueryKind, number> = { list: 1, stat: 2, status: 3 };
const QUERY_BY_CODE = invert(QUERY_CODES);

function invert<K extends string>(codes: Record<K, number>): Map<number, K> {
  return new Map(Object.entries(codes).map(([name, code]) => [code as number, name as K]));
}

function decodeCode<K>(table: Map<number, K>, code: number, what: string): K {
  const name = table.get(code);
  if (name === undefined) throw new WireError(`unknown ${what} code ${code}`);
  return name;
}

/** In an acquire's mode byte: the client caches the hold after release. */
const CACHE_BIT = 0x80;

function readFlag(reader: Reader, what: string): boolean {
  const flag = reader.u8();
  if (flag > 1) throw new WireError(`${what} is ${flag}, not 0 or 1`);
  return flag === 1;
}

function modeCode(mode: Mode): number {
  return mode === "read" ? 1 : 2;
}

function decodeMode(code: number): Mode {
  if (code === 1) return "read";
  if (code === 2) return "write";
  throw new WireError(`unknown hold mode ${code}`);
}

// ---- pages --------------------------------------------------------------

function pagesSize(pages: PageWrite[]): number {
  let size = 4;
  for (const page of pages) size += 4 + 4 + page.bytes.length;
  return size;
}

/** Page lists made by packPages, and the buffer that already holds their encoding. */
const packedSections = new WeakMap<PageWrite[], Uint8Array>();

/**
 * Copies the pages `indices` of `source` (pages of `pageSize` bytes) straight
 * into their wire encoding, one buffer for all: a release ships its dirty
 * pages with this one copy (encodeMessageParts sends the buffer as it is).
 * The returned list must not be changed.
 */
export function packPages(indices: ArrayLike<number>, pageSize: number, source: Uint8Array): PageWrite[] {
  const section = new Uint8Array(4 + indices.length * (8 + pageSize));
  const view = new DataView(section.buffer);
  view.setUint32(0, indices.length, true);
  const pages: PageWrite[] = [];
  let offset = 4;
  for (let i = 0; i < indices.length; i++) {
    const page = indices[i]!;
    view.setUint32(offset, page, true);
    view.setUint32(offset + 4, pageSize, true);
    const bytes = section.subarray(offset + 8, offset + 8 + pageSize);
    bytes.set(source.subarray(page * pageSize, (page + 1) * pageSize));
    pages.push({ page, bytes });
    offset += 8 + pageSize;
  }
  packedSections.set(pages, section);
  return pages;
}

function writePages(writer: Writer, pages: PageWrite[]): void {
  const section = packedSections.get(pages);
  if (section) {
    writer.raw(section);
    return;
  }
  writer.u32(pages.length);
  for (const page of pages) writer.u32(page.page).blob(page.bytes);
}

function readPages(reader: Reader): PageWrite[] {
  const count = reader.u32();
  // Each page needs at least 8 bytes of header: refuse counts the frame cannot hold.
  if (count * 8 > reader.remaining) throw new WireError(`page count ${count} does not fit in the frame`);
  const pages: PageWrite[] = [];
  for (let i = 0; i < count; i++) pages.push({ page: reader.u32(), bytes: reader.blob() });
  return pages;
}

// ---- ops ----------------------------------------------------------------

export function opSize(op: Op): number {
  switch (op.type) {
    case "open_session":
      return 1 + 4;
    case "close_session":
      return 1;
    case "create":
      return 1 + sizeOf.str(op.name) + 8;
    case "delete":
      return 1 + sizeOf.str(op.name);
    case "acquire":
      return 1 + sizeOf.str(op.name) + 1 + 8 + 8;
    case "release":
      return 1 + 8 + pagesSize(op.pages);
    case "cancel":
      return 1 + 4;
    case "expire_session":
      return 1 + 8;
    case "checkpoint":
      return 1;
    case "refused":
      return 1 + sizeOf.str(op.code) + sizeOf.str(op.message) + 8;
  }
}

export function writeOp(writer: Writer, op: Op): void {
  writer.u8(OP_CODES[op.type]);
  switch (op.type) {
    case "open_session":
      writer.u32(op.timeoutMs);
      return;
    case "close_session":
      return;
    case "create":
      writer.str(op.name).u53(op.size);
      return;
    case "delete":
      writer.str(op.name);
      return;
    case "acquire":
      writer.str(op.name).u8(modeCode(op.mode) | (op.cache ? CACHE_BIT : 0)).f64(op.knownCreatedSeq).f64(op.cachedVersion);
      return;
    case "release":
      writer.u53(op.holdId);
      writePages(writer, op.pages);
      return;
    case "cancel":
      writer.u32(op.acquireReqNo);
      return;
    case "expire_session":
      writer.u53(op.session);
      return;
    case "checkpoint":
      return;
    case "refused":
      writer.str(op.code).str(op.message).u53(op.holdId);
      return;
  }
}

export function readOp(reader: Reader): Op {
  const type = decodeCode(OP_BY_CODE, reader.u8(), "operation");
  switch (type) {
    case "open_session":
      return { type, timeoutMs: reader.u32() };
    case "close_session":
      return { type };
    case "create":
      return { type, name: reader.str(), size: reader.u53() };
    case "delete":
      return { type, name: reader.str() };
    case "acquire": {
      const name = reader.str();
      const modeByte = reader.u8();
      const op: Op = { type, name, mode: decodeMode(modeByte & ~CACHE_BIT), knownCreatedSeq: reader.f64(), cachedVersion: reader.f64() };
      // Only set when on: updates logged before cached holds existed read back unchanged.
      if (modeByte & CACHE_BIT) op.cache = true;
      return op;
    }
    case "release":
      return { type, holdId: reader.u53(), pages: readPages(reader) };
    case "cancel":
      return { type, acquireReqNo: reader.u32() };
    case "expire_session":
      return { type, session: reader.u53() };
    case "checkpoint":
      return { type };
    case "refused":
      return { type, code: reader.str(), message: reader.str(), holdId: reader.u53() };
  }
}

/** Each update's encoding, kept from when it was decoded or first encoded (forwarded and logged as is). */
const encodings = new WeakMap<Update, Uint8Array>();

/** The bytes of writeUpdate(update): encoded once, then reused (no copy of the pages per use). */
export function encodeUpdate(update: Update): Uint8Array {
  let bytes = encodings.get(update);
  if (!bytes) {
    const writer = new Writer(updateSize(update));
    writeUpdate(writer, update);
    bytes = writer.bytes;
    encodings.set(update, bytes);
  }
  return bytes;
}

/** Reads an update and remembers the bytes it came from. */
export function readUpdateKeepingBytes(reader: Reader): Update {
  const start = reader.offset;
  const update = readUpdate(reader);
  encodings.set(update, reader.bytes.subarray(start, reader.offset));
  return update;
}

export function updateSize(update: Update): number {
  return 8 + 8 + 8 + 4 + 4 + opSize(update.op);
}

export function writeUpdate(writer: Writer, update: Update): void {
  writer.u53(update.seq).u53(update.epoch).u53(update.session).u32(update.reqNo).u32(update.doneBelow);
  writeOp(writer, update.op);
}

export function readUpdate(reader: Reader): Update {
  return {
    seq: reader.u53(),
    epoch: reader.u53(),
    session: reader.u53(),
    reqNo: reader.u32(),
    doneBelow: reader.u32(),
    op: readOp(reader),
  };
}

// ---- replies ------------------------------------------------------------

export function replySize(reply: Reply): number {
  switch (reply.type) {
    case "ok":
      return 1;
    case "session":
      return 1 + 4;
    case "created":
      return 1 + 8 * 3;
    case "granted":
      return 1 + 8 + 1 + sizeOf.str(reply.name) + 8 * 5;
    case "released":
      return 1 + 8 + 1;
    case "queued":
      return 1;
    case "checkpointed":
      return 1 + 8;
    case "error":
      return 1 + sizeOf.str(reply.code) + sizeOf.str(reply.message);
  }
}

export function writeReply(writer: Writer, reply: Reply): void {
  writer.u8(REPLY_CODES[reply.type]);
  switch (reply.type) {
    case "ok":
      return;
    case "session":
      writer.u32(reply.timeoutMs);
      return;
    case "created":
      writer.u53(reply.offset).u53(reply.size).u53(reply.createdSeq);
      return;
    case "granted":
      writer.u53(reply.holdId).u8(modeCode(reply.mode)).str(reply.name);
      writer.u53(reply.offset).u53(reply.size).u53(reply.createdSeq).u53(reply.version).f64(reply.sendAfter);
      return;
    case "released":
      writer.u53(reply.version).u8(reply.cached ? 1 : 0);
      return;
    case "queued":
      return;
    case "checkpointed":
      writer.u53(reply.seq);
      return;
    case "error":
      writer.str(reply.code).str(reply.message);
      return;
  }
}

export function readReply(reader: Reader): Reply {
  const type = decodeCode(REPLY_BY_CODE, reader.u8(), "reply");
  switch (type) {
    case "ok":
      return { type };
    case "session":
      return { type, timeoutMs: reader.u32() };
    case "created":
      return { type, offset: reader.u53(), size: reader.u53(), createdSeq: reader.u53() };
    case "granted":
      return {
        type,
        holdId: reader.u53(),
        mode: decodeMode(reader.u8()),
        name: reader.str(),
        offset: reader.u53(),
        size: reader.u53(),
        createdSeq: reader.u53(),
        version: reader.u53(),
        sendAfter: reader.f64(),
      };
    case "released":
      return { type, version: reader.u53(), cached: readFlag(reader, "cached") };
    case "queued":
      return { type };
    case "checkpointed":
      return { type, seq: reader.u53() };
    case "error":
      return { type, code: reader.str(), message: reader.str() };
  }
}

// ---- messages -----------------------------------------------------------

export function frame(type: number, bodySize: number, fill: (writer: Writer) => void): Uint8Array {
  const writer = new Writer(FRAME_HEADER_BYTES + bodySize);
  writer.offset = FRAME_HEADER_BYTES;
  fill(writer);
  if (writer.offset !== writer.bytes.length) {
    throw new Error(`encoder size mismatch for type ${type}: ${writer.offset} != ${writer.bytes.length}`);
  }
  return writeFrameHeader(writer.bytes, type);
}

/** Below this, packed pages are copied into the frame: one write instead of two. */
const SEPARATE_SECTION_BYTES_MIN = 64 * 1024;

/**
 * A message as buffers to send one after the other: a release whose pages
 * came from packPages goes out as a small head and the packed pages, not
 * copied into one frame. Every other message is one frame.
 */
export function encodeMessageParts(message: Message): Uint8Array[] {
  const op = message.type === "request" ? message.body.op : null;
  const section = op?.type === "release" ? packedSections.get(op.pages) : undefined;
  if (message.type !== "request" || op?.type !== "release" || !section || section.length < SEPARATE_SECTION_BYTES_MIN) {
    return [encodeMessage(message)];
  }
  const b = message.body;
  const head = frame(MessageType.request, 8 + 4 + 4 + 1 + 8, (w) => {
    w.u53(b.session).u32(b.reqNo).u32(b.doneBelow).u8(OP_CODES.release).u53(op.holdId);
  });
  // The frame's length field covers the pages sent after this head.
  new DataView(head.buffer).setUint32(0, head.length - 4 + section.length, true);
  return [head, section];
}

export function encodeMessage(message: Message): Uint8Array {
  switch (message.type) {
    case "hello": {
      const { version, role, senderId, nonce } = message.body;
      return frame(MessageType.hello, 4 + 2 + 1 + 2 + NONCE_BYTES, (w) =>
        w.u32(MAGIC).u16(version).u8(role === "client" ? 1 : 2).u16(senderId).raw(fixed(nonce, NONCE_BYTES, "nonce")),
      );
    }
    case "challenge":
      return frame(MessageType.challenge, NONCE_BYTES + PROOF_BYTES, (w) =>
        w.raw(fixed(message.body.nonce, NONCE_BYTES, "nonce")).raw(fixed(message.body.proof, PROOF_BYTES, "proof")),
      );
    case "auth":
      return frame(MessageType.auth, PROOF_BYTES, (w) => w.raw(fixed(message.body.proof, PROOF_BYTES, "proof")));
    case "welcome": {
      const b = message.body;
      let size = 2 + 2 + 8 + 4 + 8 + 2;
      for (const address of b.chain) size += sizeOf.str(address);
      return frame(MessageType.welcome, size, (w) => {
        w.u16(b.version).u16(b.serverId).u53(b.segmentSize).u32(b.pageSize).u53(b.epoch).u16(b.chain.length);
        for (const address of b.chain) w.str(address);
      });
    }
    case "request": {
      const b = message.body;
      return frame(MessageType.request, 8 + 4 + 4 + opSize(b.op), (w) => {
        w.u53(b.session).u32(b.reqNo).u32(b.doneBelow);
        writeOp(w, b.op);
      });
    }
    case "reply": {
      const b = message.body;
      return frame(MessageType.reply, 8 + 4 + replySize(b.reply) + pagesSize(b.pages), (w) => {
        w.u53(b.session).u32(b.reqNo);
        writeReply(w, b.reply);
        writePages(w, b.pages);
      });
    }
    case "heartbeat":
      return frame(MessageType.heartbeat, 8 + 4, (w) => w.u53(message.body.session).u32(message.body.doneBelow));
    case "query": {
      const b = message.body;
      return frame(MessageType.query, 4 + 1 + sizeOf.str(b.name), (w) => w.u32(b.queryId).u8(QUERY_CODES[b.kind]).str(b.name));
    }
    case "queryReply": {
      const json = new TextEncoder().encode(message.body.json);
      return frame(MessageType.queryReply, 4 + 4 + json.length, (w) => w.u32(message.body.queryId).blob(json));
    }
    case "recall": {
      const b = message.body;
      return frame(MessageType.recall, 8 + 8 + sizeOf.str(b.name), (w) => w.u53(b.session).u53(b.holdId).str(b.name));
    }
    case "subscribe": {
      const b = message.body;
      return frame(MessageType.subscribe, 8 + 4 + 4 * b.waiting.length, (w) => {
        w.u53(b.session).u32(b.waiting.length);
        for (const reqNo of b.waiting) w.u32(reqNo);
      });
    }
    case "error":
      return frame(MessageType.error, sizeOf.str(message.body.code) + sizeOf.str(message.body.message), (w) =>
        w.str(message.body.code).str(message.body.message),
      );
    case "config": {
      const b = message.body;
      return frame(MessageType.config, 8 + 2 + b.chain.reduce((n, a) => n + sizeOf.str(a), 0), (w) => {
        w.u53(b.epoch).u16(b.chain.length);
        for (const address of b.chain) w.str(address);
      });
    }
  }
}

/** Decodes one frame's body; throws WireError on anything malformed. */
export function decodeMessage(type: number, body: Uint8Array): Message {
  const r = new Reader(body);
  const message = decodeBody(type, r);
  r.done();
  return message;
}

function decodeBody(type: number, r: Reader): Message {
  switch (type) {
    case MessageType.hello: {
      const magic = r.u32();
      if (magic !== MAGIC) throw new WireError("not a pstore peer (bad magic)");
      const version = r.u16();
      const roleCode = r.u8();
      if (roleCode !== 1 && roleCode !== 2) throw new WireError(`unknown role ${roleCode}`);
      return { type: "hello", body: { version, role: roleCode === 1 ? "client" : "server", senderId: r.u16(), nonce: r.raw(NONCE_BYTES) } };
    }
    case MessageType.challenge:
      return { type: "challenge", body: { nonce: r.raw(NONCE_BYTES), proof: r.raw(PROOF_BYTES) } };
    case MessageType.auth:
      return { type: "auth", body: { proof: r.raw(PROOF_BYTES) } };
    case MessageType.welcome: {
      const version = r.u16();
      const serverId = r.u16();
      const segmentSize = r.u53();
      const pageSize = r.u32();
      const epoch = r.u53();
      const count = r.u16();
      const chain: string[] = [];
      for (let i = 0; i < count; i++) chain.push(r.str());
      return { type: "welcome", body: { version, serverId, segmentSize, pageSize, epoch, chain } };
    }
    case MessageType.request:
      return { type: "request", body: { session: r.u53(), reqNo: r.u32(), doneBelow: r.u32(), op: readOp(r) } };
    case MessageType.reply:
      return { type: "reply", body: { session: r.u53(), reqNo: r.u32(), reply: readReply(r), pages: readPages(r) } };
    case MessageType.heartbeat:
      return { type: "heartbeat", body: { session: r.u53(), doneBelow: r.u32() } };
    case MessageType.query:
      return {
        type: "query",
        body: { queryId: r.u32(), kind: decodeCode(QUERY_BY_CODE, r.u8(), "query"), name: r.str() },
      };
    case MessageType.queryReply: {
      const queryId = r.u32();
      const bytes = r.blob();
      let json: string;
      try {
        json = strictUtf8.decode(bytes);
      } catch {
        throw new WireError("query answer is not valid UTF-8");
      }
      return { type: "queryReply", body: { queryId, json } };
    }
    case MessageType.subscribe: {
      const session = r.u53();
      const count = r.u32();
      if (count * 4 > r.remaining) throw new WireError(`waiting count ${count} does not fit in the frame`);
      const waiting: number[] = [];
      for (let i = 0; i < count; i++) waiting.push(r.u32());
      return { type: "subscribe", body: { session, waiting } };
    }
    case MessageType.recall:
      return { type: "recall", body: { session: r.u53(), holdId: r.u53(), name: r.str() } };
    case MessageType.error:
      return { type: "error", body: { code: r.str(), message: r.str() } };
    case MessageType.config: {
      const epoch = r.u53();
      const count = r.u16();
      const chain: string[] = [];
      for (let i = 0; i < count; i++) chain.push(r.str());
      return { type: "config", body: { epoch, chain } };
    }
    default:
      throw new WireError(`unknown message type ${type}`);
  }
}

function fixed(bytes: Uint8Array, length: number, what: string): Uint8Array {
  if (bytes.length !== length) throw new RangeError(`a ${what} is ${length} bytes, got ${bytes.length}`);
  return bytes;
}

export function helloMessage(role: "client" | "server", senderId: number, nonce: Uint8Array): Message {
  return { type: "hello", body: { version: PROTOCOL_VERSION, role, senderId, nonce } };
}
