/**
 * The messages between clients and servers, and their binary encodings.
 * One encode/decode pair per message; page bytes travel raw, never as JSON
 * (JSON carries only small metadata answers: list, stat, status). The ops and
 * updates a request carries are in ops.ts, replies in replies.ts, page lists in pages.ts.
 */
import { PROTOCOL_VERSION, SEPARATE_SECTION_BYTES_MIN } from "../constants";
import { Reader, Writer, WireError, decodeCode, invert, sizeOf } from "./codec";
import { FRAME_HEADER_BYTES, writeFrameHeader } from "./frame";
import { OP_CODES, type Op, opSize, readOp, writeOp } from "./ops";
import { type PageWrite, packedSections, pagesSize, readPages, writePages } from "./pages";
import { type Reply, readReply, replySize, writeReply } from "./replies";

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
  /** Empty chain: why this server does not serve yet, in words (what it waits for). Absent: nothing said. */
  notServing?: string;
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
const QUERY_CODES: Record<QueryKind, number> = { list: 1, stat: 2, status: 3 };
const QUERY_BY_CODE = invert(QUERY_CODES);

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
      let size = 2 + 2 + 8 + 4 + 8 + 2 + sizeOf.str(b.notServing ?? "");
      for (const address of b.chain) size += sizeOf.str(address);
      return frame(MessageType.welcome, size, (w) => {
        w.u16(b.version).u16(b.serverId).u53(b.segmentSize).u32(b.pageSize).u53(b.epoch).u16(b.chain.length);
        for (const address of b.chain) w.str(address);
        w.str(b.notServing ?? "");
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
      const notServing = r.str();
      return { type: "welcome", body: { version, serverId, segmentSize, pageSize, epoch, chain, ...(notServing === "" ? {} : { notServing }) } };
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
