/**
 * Fuzzing material for test/fuzz_decoder.test.ts and test/fuzz.test.ts: a corpus of valid encodings of
 * every client and server message, mutators (bit flips, truncations, length
 * prefixes set to huge or zero, changed type bytes, splices, inserted and
 * deleted bytes, overwritten fields, random frames), and a model of how a
 * server reacts to a byte stream — which frame it refuses, which it accepts,
 * and which would change its state — so a live-server fuzz can be built with
 * no state-changing frame in it.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "bun";
import { type Random, seedFrom } from "../../src/chaos/random";
import { FRAME_BYTES_MAX, HANDSHAKE_FRAME_BYTES_MAX, PROTOCOL_VERSION } from "../../src/constants";
import {
  FRAME_HEADER_BYTES,
  FrameDecoder,
  type Message,
  type PeerMessage,
  type Update,
  WireError,
  concatBytes,
  decodeMessage,
  decodePeer,
  encodeMessage,
  encodePeer,
  helloMessage,
  isPeerFrameType,
} from "../../src/wire";
import { ALL_MESSAGES, ALL_OPS } from "./wire";

/** Frames per campaign (decoder and servers each) and the seed: FUZZ_FRAMES, FUZZ_SEED. */
export const FUZZ_FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000);
export const FUZZ_SEED = seedFrom(process.env.FUZZ_SEED ?? "1");

/** The first `max` bytes in hex, for a failure's message. */
export function hexDump(bytes: Uint8Array, max = 96): string {
  const shown = [...bytes.subarray(0, max)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  return bytes.length > max ? `${shown} … (${bytes.length} bytes)` : shown;
}

// ---- the corpus ------------------------------------------------------------

const nonce = (fill: number) => new Uint8Array(32).fill(fill);

/** Every client message (helpers/wire.ts), and a server's hello. */
export const CLIENT_MESSAGES: Message[] = [...ALL_MESSAGES, helloMessage("server", 2, nonce(0x11))];

const updates: Update[] = ALL_OPS.map((op, i) => ({ seq: 100 + i, epoch: 65, session: 7 + i, reqNo: i + 1, doneBelow: i, op }));

export const PEER_MESSAGES: PeerMessage[] = [
  { type: "heartbeat", from: 2, epoch: 65, chain: [1, 2, 3], status: "member", appliedSeq: 120, lastEpoch: 65, busyMs: 0, diskFull: false },
  { type: "heartbeat", from: 3, epoch: 0, chain: [], status: "booting", appliedSeq: 0, lastEpoch: 0, busyMs: 0, diskFull: true },
  { type: "heartbeat", from: 2, epoch: 195, chain: [3], status: "booting", appliedSeq: 10, lastEpoch: 130, busyMs: 0, diskFull: false, bootPeers: [1, 3] },
  { type: "heartbeat", from: 1, epoch: 257, chain: [1, 3], status: "member", appliedSeq: 40, lastEpoch: 257, busyMs: 0, diskFull: false, unheard: [2] },
  { type: "config", from: 1, epoch: 129, chain: [1, 3], issued: true },
  { type: "sync_request", from: 1, epoch: 129, chain: [1, 2, 3] },
  { type: "sync_reply", from: 2, epoch: 129, appliedSeq: 77, lastEpoch: 65 },
  { type: "forward", from: 1, epoch: 65, prevEpoch: 65, updates: updates.slice(0, 3) },
  { type: "forward", from: 1, epoch: 65, prevEpoch: 0, updates },
  { type: "forward", from: 1, epoch: 65, prevEpoch: Number.MAX_SAFE_INTEGER, updates: [] },
  { type: "snapshot", from: 1, epoch: 65, seq: 120, lastEpoch: 65, bytes: new Uint8Array(48).fill(7) },
  { type: "ack", from: 3, epoch: 65, seq: 119, seqEpoch: 65 },
  { type: "join", from: 3, appliedSeq: 50, lastEpoch: 1 },
  { type: "caught_up", from: 3, epoch: 65, joiner: 2 },
  { type: "config_propose", from: 2, ballot: 130, epoch: 130, chain: [2, 3], baseEpoch: 65, formed: false },
  { type: "config_accept", from: 3, ballot: 130 },
  { type: "config_prepare", from: 2, ballot: 194, baseEpoch: 130 },
  { type: "config_promise", from: 3, ballot: 194, configEpoch: 130, accepted: { ballot: 130, epoch: 130, chain: [2, 3], baseEpoch: 65, formed: true } },
  { type: "config_promise", from: 1, ballot: 194, configEpoch: 65, accepted: null },
  { type: "config_refuse", from: 1, ballot: 100, promised: 194 },
  { type: "ahead", from: 2, epoch: 258, baseSeq: 170, baseEpoch: 65, appliedSeq: 248 },
  { type: "pull", from: 1, epoch: 258, baseSeq: 170 },
  { type: "synced", from: 2, epoch: 258, seq: 171, seqEpoch: 257 },
];

/** Whole frames (header included), one per corpus message. */
export const CORPUS: Uint8Array[] = [...CLIENT_MESSAGES.map(encodeMessage), ...PEER_MESSAGES.map(encodePeer)];

/** Every frame type byte the corpus uses. */
export const KNOWN_TYPES: number[] = [...new Set(CORPUS.map((frame) => frame[4]!))].sort((a, b) => a - b);

// ---- mutations -----------------------------------------------------------------

function setU32(bytes: Uint8Array, at: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at, value >>> 0, true);
}

/** Rewrites the length prefix so it covers exactly what follows it. */
export function fixLength(frame: Uint8Array): Uint8Array {
  if (frame.length >= 4) setU32(frame, 0, frame.length - 4);
  return frame;
}

export function frameOf(type: number, body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  frame[4] = type;
  frame.set(body, FRAME_HEADER_BYTES);
  return fixLength(frame);
}

export type MutationKind =
  | "bitflip"
  | "bytes"
  | "truncate"
  | "cut"
  | "length-huge"
  | "length-zero"
  | "length-off"
  | "type"
  | "field"
  | "insert"
  | "delete"
  | "splice"
  | "random"
  | "empty-body"
  | "valid";

export const MUTATION_WEIGHTS: Record<MutationKind, number> = {
  bitflip: 20,
  bytes: 12,
  truncate: 10,
  cut: 3,
  "length-huge": 3,
  "length-zero": 2,
  "length-off": 5,
  type: 8,
  field: 12,
  insert: 5,
  delete: 5,
  splice: 6,
  random: 6,
  "empty-body": 2,
  valid: 3,
};

/** Length prefixes over the limit (refused from the header) and under it (the decoder allocates that much). */
export const OVER_LIMIT_LENGTHS = [0xffff_ffff, 0x8000_0000, FRAME_BYTES_MAX + 1];
export const UNDER_LIMIT_LENGTHS = [FRAME_BYTES_MAX, FRAME_BYTES_MAX - 1, 1 << 24, 1 << 20, 65_536];

export interface MutateOptions {
  kind?: MutationKind;
  /** Length prefixes the "length-huge" mutation picks from (default: over and under the limit). */
  hugeLengths?: number[];
}

/** One mutated frame (or frame-like bytes) from the corpus. */
export function mutate(random: Random, options: MutateOptions = {}): Uint8Array {
  const kind = options.kind ?? random.weighted(MUTATION_WEIGHTS);
  const base = random.pick(CORPUS).slice();
  const bodyAt = (frame: Uint8Array) => FRAME_HEADER_BYTES + random.int(Math.max(1, frame.length - FRAME_HEADER_BYTES));
  switch (kind) {
    case "bitflip": {
      const flips = 1 + random.int(4);
      for (let i = 0; i < flips && base.length > FRAME_HEADER_BYTES; i++) {
        const at = bodyAt(base);
        base[at] = base[at]! ^ (1 << random.int(8));
      }
      return base;
    }
    case "bytes": {
      const count = 1 + random.int(6);
      for (let i = 0; i < count && base.length > FRAME_HEADER_BYTES; i++) base[bodyAt(base)] = random.int(256);
      return base;
    }
    case "truncate":
      // A shorter body with a consistent length prefix: the decoder of the message must notice.
      return fixLength(base.slice(0, FRAME_HEADER_BYTES + random.int(base.length - FRAME_HEADER_BYTES)));
    case "cut":
      // The stream ends inside the frame: the length prefix promises more than comes.
      return base.slice(0, random.int(base.length));
    case "length-huge":
      setU32(base, 0, random.pick(options.hugeLengths ?? [...OVER_LIMIT_LENGTHS, ...UNDER_LIMIT_LENGTHS]));
      return base;
    case "length-zero":
      setU32(base, 0, random.pick([0, 0, 1]));
      return base;
    case "length-off":
      setU32(base, 0, Math.max(0, base.length - 4 + random.pick([-3, -2, -1, 1, 2, 3, 8, 100])));
      return base;
    case "type":
      base[4] = random.chance(0.6) ? random.pick(KNOWN_TYPES) : random.int(256);
      return base;
    case "field": {
      if (base.length <= FRAME_HEADER_BYTES + 1) return base;
      const at = bodyAt(base);
      const view = new DataView(base.buffer);
      const room = base.length - at;
      const choice = random.int(6);
      if (choice === 0 && room >= 2) view.setUint16(at, 0xffff, true);
      else if (choice === 1 && room >= 4) view.setUint32(at, 0xffff_ffff, true);
      else if (choice === 2 && room >= 4) view.setUint32(at, 0, true);
      else if (choice === 3 && room >= 8) view.setFloat64(at, random.pick([Number.NaN, Infinity, -Infinity, 2 ** 60, -0]), true);
      else if (choice === 4 && room >= 8) {
        view.setUint32(at, 0xffff_ffff, true);
        view.setUint32(at + 4, random.pick([0x20_0000, 0xffff_ffff, 0x1f_ffff]), true);
      } else if (room >= 2) view.setUint16(at, random.int(0x10000), true);
      return base;
    }
    case "insert": {
      const at = bodyAt(base);
      return fixLength(concatBytes([base.subarray(0, at), random.bytes(1 + random.int(16)), base.subarray(at)]));
    }
    case "delete": {
      if (base.length <= FRAME_HEADER_BYTES) return base;
      const at = bodyAt(base);
      return fixLength(concatBytes([base.subarray(0, at), base.subarray(Math.min(base.length, at + 1 + random.int(16)))]));
    }
    case "splice": {
      const other = random.pick(CORPUS);
      const at = FRAME_HEADER_BYTES + random.int(Math.max(1, base.length - FRAME_HEADER_BYTES));
      const from = FRAME_HEADER_BYTES + random.int(Math.max(1, other.length - FRAME_HEADER_BYTES));
      return fixLength(concatBytes([base.subarray(0, at), other.subarray(from)]));
    }
    case "random": {
      const type = random.chance(0.7) ? random.pick(KNOWN_TYPES) : random.int(256);
      return frameOf(type, random.bytes(random.int(random.chance(0.9) ? 80 : 2000)));
    }
    case "empty-body":
      return frameOf(random.chance(0.8) ? random.pick(KNOWN_TYPES) : random.int(256), new Uint8Array(0));
    case "valid":
      return base;
  }
}

/** Cuts `bytes` at random points (or one byte at a time): how TCP may deliver them. */
export function chunk(random: Random, bytes: Uint8Array): Uint8Array[] {
  if (bytes.length === 0) return [bytes];
  if (random.chance(0.05)) return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
  const cuts = new Set<number>();
  const count = random.int(6);
  for (let i = 0; i < count; i++) cuts.add(random.int(bytes.length));
  const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
  const chunks: Uint8Array[] = [];
  for (let i = 1; i < points.length; i++) if (points[i]! > points[i - 1]!) chunks.push(bytes.subarray(points[i - 1]!, points[i]!));
  return chunks.length > 0 ? chunks : [bytes];
}

// ---- what a server does with a stream --------------------------------------------

/** How a server sees a connection at a point of its stream (as src/server/server.ts does). */
export type Role = "new" | "authenticating" | "client" | "peer" | "closed";

export interface ServerShape {
  /** The server has a --secret (a hello leads to a challenge, nothing else gets in). */
  secret: boolean;
  /** Valid peer ids (the others of --peers). */
  peerIds: number[];
}

export interface Verdict {
  role: Role;
  /** A frame the server would accept and that could change its state. */
  forbidden: boolean;
  /** Frames the server looked at (decoded) before closing or running out of bytes. */
  examined: number;
  /** The stream ends inside a frame: the server waits for more. */
  partial: boolean;
  /** The largest length prefix the server accepts in this stream (it allocates that much for the body). */
  largestLength: number;
}

/**
 * Replays `stream` the way the server would, from `start`: frames go through
 * a FrameDecoder, then the role's decoder; the first refused frame closes the
 * connection. A request of a client, or any well-formed server message on a
 * peer link, counts as forbidden: it is a real operation, not bad input.
 */
export function judge(shape: ServerShape, stream: Uint8Array, start: Role): Verdict {
  let role: Role = start;
  let forbidden = false;
  let examined = 0;
  let largestLength = 0;
  // FrameDecoder's rules, over the whole stream at once (it would allocate a body as large as the length says).
  // Until the handshake is done, the server takes only small frames.
  const limitOf = (r: Role) => (r === "client" || r === "peer" ? FRAME_BYTES_MAX : HANDSHAKE_FRAME_BYTES_MAX);
  let limit = limitOf(role);
  let offset = 0;
  while (stream.length - offset >= FRAME_HEADER_BYTES) {
    const length = stream[offset]! + stream[offset + 1]! * 0x100 + stream[offset + 2]! * 0x1_0000 + stream[offset + 3]! * 0x100_0000;
    if (length < 1 || length > limit) {
      role = "closed";
      break;
    }
    // The server's decoder goes on through the rest of a chunk after it refused a frame: count what it allocates there too.
    largestLength = Math.max(largestLength, length);
    if (stream.length - offset - 4 < length) break;
    const type = stream[offset + 4]!;
    const body = stream.subarray(offset + FRAME_HEADER_BYTES, offset + 4 + length);
    offset += 4 + length;
    if (role === "closed") continue;
    examined++;
    role = step(shape, role, type, body, () => (forbidden = true));
    if (role !== "closed") limit = limitOf(role);
  }
  const partial = role !== "closed" && offset < stream.length;
  return { role, forbidden, examined, partial, largestLength };
}

function step(shape: ServerShape, role: Role, type: number, body: Uint8Array, forbid: () => void): Role {
  if (role === "peer") {
    if (!isPeerFrameType(type)) return "closed";
    try {
      decodePeer(type, body);
    } catch (error) {
      if (error instanceof WireError) return "closed";
      throw error;
    }
    forbid();
    return "peer";
  }
  let message: Message;
  try {
    message = decodeMessage(type, body);
  } catch (error) {
    if (error instanceof WireError) return "closed";
    throw error;
  }
  switch (role) {
    case "new": {
      if (message.type !== "hello" || message.body.version !== PROTOCOL_VERSION) return "closed";
      const { role: who, senderId } = message.body;
      if (who === "server" && !shape.peerIds.includes(senderId)) return "closed";
      if (shape.secret) return "authenticating";
      return who === "server" ? "peer" : "client";
    }
    case "authenticating":
      // Only the right 32-byte HMAC gets through: a fuzzer cannot produce it.
      return "closed";
    case "client":
      if (message.type === "request") {
        forbid();
        return "client";
      }
      return message.type === "heartbeat" || message.type === "query" || message.type === "subscribe" ? "client" : "closed";
    default:
      return "closed";
  }
}

/** A frame no server accepts in any role: the last frame of a stream that must end in a refusal. */
export function terminator(random: Random): Uint8Array {
  return frameOf(0xee, random.bytes(random.int(8)));
}

// ---- raw connections to a live server ---------------------------------------------

export interface ReceivedFrame {
  type: number;
  body: Uint8Array;
}

/**
 * A bare TCP connection that writes exactly the bytes it is given (with its
 * own queue: Bun's write() keeps nothing, ../shared/BUN.md) and records the
 * frames the server sends back, and when the server closed.
 */
export class RawConnection {
  readonly frames: ReceivedFrame[] = [];
  /** How the connection ended: "end" (the server closed it), "close", "error …", or "terminated" (by us). */
  closeReason = "";
  /** A write found the connection closed by the server. */
  writeFailed = false;
  private socket: Socket<undefined> | null = null;
  private readonly queue: Uint8Array[] = [];
  private readonly decoder = new FrameDecoder(FRAME_BYTES_MAX);
  private readonly waiters = new Set<() => void>();
  private closedResolve!: () => void;
  readonly closed: Promise<void> = new Promise((resolve) => (this.closedResolve = resolve));
  private isClosed = false;

  static async open(address: string): Promise<RawConnection> {
    const connection = new RawConnection();
    const colon = address.lastIndexOf(":");
    connection.socket = await Bun.connect({
      hostname: address.slice(0, colon),
      port: Number(address.slice(colon + 1)),
      socket: {
        data: (_socket, bytes) => connection.onData(bytes),
        drain: () => connection.flush(),
        end: () => connection.onClose("end"),
        close: () => connection.onClose("close"),
        error: (_socket, error) => connection.onClose(`error ${error.message}`),
      },
    });
    return connection;
  }

  get open(): boolean {
    return !this.isClosed;
  }

  send(bytes: Uint8Array): void {
    if (this.isClosed || bytes.length === 0) return;
    this.queue.push(bytes);
    if (this.queue.length === 1) this.flush();
  }

  /** Resolves with the first received frame that `accept` takes, or null after `timeoutMs` or a close. */
  waitFrame(accept: (frame: ReceivedFrame) => boolean, timeoutMs: number): Promise<ReceivedFrame | null> {
    const found = this.frames.find(accept);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => {
      const check = () => {
        const match = this.frames.find(accept);
        if (match || this.isClosed) {
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve(match ?? null);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(null);
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  /** True if the server closed the connection within `timeoutMs`. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      this.closed.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return result;
  }

  /** Closes from our side (no FIN-wait: the server sees the connection go). */
  terminate(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason = "terminated";
    this.socket?.terminate();
    this.closedResolve();
  }

  private flush(): void {
    const socket = this.socket;
    while (socket && this.queue.length > 0 && !this.isClosed) {
      const head = this.queue[0]!;
      const written = socket.write(head);
      if (written < 0) {
        // The server closed: what it sent before may still be on its way to us.
        this.writeFailed = true;
        this.queue.length = 0;
        return;
      }
      if (written < head.length) {
        this.queue[0] = head.subarray(written);
        return;
      }
      this.queue.shift();
    }
  }

  private onData(bytes: Uint8Array): void {
    try {
      this.decoder.push(bytes.slice(), (frame) => this.frames.push({ type: frame.type, body: frame.body }));
    } catch {
      // The server sent something we cannot frame: keep the bytes we have.
    }
    for (const waiter of [...this.waiters]) waiter();
  }

  private onClose(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason = reason;
    this.socket?.terminate();
    this.closedResolve();
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** VmRSS of a process in MiB (Linux). */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) / 1024;
}
