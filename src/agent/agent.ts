/**
 * `pstore agent`: the host-local process through which C programs (and any
 * language with a C FFI) use pstore. Each program's connection gets its own
 * client store (src/client: its own session, failover, auth, TLS), whose
 * segment is mapped from a file under /dev/shm that the program maps too:
 * grants land in the program's memory, and the pages it wrote (it sends their
 * numbers) are shipped from the same bytes. When a program's connection
 * closes (exit, crash, SIGKILL) its store closes and the servers free its
 * holds at once. Uses of cached grants are lent to the program through shared
 * memory (lending.ts), so that most accesses need no message.
 */
import { closeSync, existsSync, ftruncateSync, lstatSync, mkdirSync, openSync, statSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Socket, UnixSocketListener } from "bun";
import { type GrantLender, connectLender } from "../client/store.ts";
import type { Store } from "../client/types.ts";
import { PStoreError } from "../errors.ts";
import { MappedSegment, SharedRegion } from "../memory/index.ts";
import { AGENT_REQUEST_BYTES_MAX, UNIX_SOCKET_PATH_BYTES_MAX } from "../constants.ts";
import { LEND_TABLE_BYTES, Lending } from "./lending.ts";
import { AGENT_PROTOCOL_VERSION, decodeRequest, encodeReply, type ReplyField, type Request } from "./protocol.ts";

export interface AgentOptions {
  socketPath: string;
  /** Exit after this long with no program connected; 0 = never. */
  idleExitMs: number;
  log: (line: string) => void;
}

const EMPTY = new Uint8Array(0);
/** An access reply's slot when the use was not lent. */
const NO_SLOT = 0xffffffff;

function decodeOrError(body: Uint8Array): Request | PStoreError {
  try {
    return decodeRequest(body);
  } catch (error) {
    return error instanceof PStoreError ? error : new PStoreError("EPROTO", (error as Error).message);
  }
}

/** Where the segment files live: tmpfs when there is one. */
function segmentDir(): string {
  return existsSync("/dev/shm") ? "/dev/shm" : (process.env.TMPDIR ?? "/tmp");
}

let segmentFiles = 0;

/** One program's connection: its store, its segment, its holds by offset. */
class Program {
  store: (Store & GrantLender) | null = null;
  segment: MappedSegment | null = null;
  private table: SharedRegion | null = null;
  private lending: Lending | null = null;
  segmentPath = "";
  readonly holds = new Map<number, { name: string; view: Uint8Array; mode: "read" | "write" }>();
  private inbound = new Uint8Array(0);
  private queue: Promise<void> = Promise.resolve();
  /** Requests received and not yet answered. */
  private busy = 0;
  private closed = false;
  private outbound: Uint8Array[] = [];

  constructor(private readonly socket: Socket<Program>) {}

  onData(chunk: Uint8Array): void {
    // The usual case, one whole request in one chunk, is decoded in place (no copy).
    let data = chunk;
    if (this.inbound.length > 0) {
      data = new Uint8Array(this.inbound.length + chunk.length);
      data.set(this.inbound);
      data.set(chunk, this.inbound.length);
    }
    let at = 0;
    while (data.length - at >= 4) {
      const length = new DataView(data.buffer, data.byteOffset + at).getUint32(0, true);
      if (length > AGENT_REQUEST_BYTES_MAX) {
        this.socket.end();
        return;
      }
      if (data.length - at < 4 + length) break;
      // Decoded now: the request copies what it keeps, so the chunk may be reused after.
      const request = decodeOrError(data.subarray(at + 4, at + 4 + length));
      at += 4 + length;
      // One request at a time, in order: the library waits for each reply anyway.
      // Nothing pending: answered now, not one promise turn later.
      this.busy++;
      this.queue = this.busy === 1 ? this.answer(request) : this.queue.then(() => this.answer(request));
    }
    this.inbound = at === data.length ? EMPTY : data.slice(at);
  }

  private async answer(request: Request | PStoreError): Promise<void> {
    let reply: Uint8Array;
    try {
      if (request instanceof PStoreError) throw request;
      reply = encodeReply(await this.serve(request));
    } catch (error) {
      const known = error instanceof PStoreError;
      const message = known ? error.message : `EPROTO: ${(error as Error).message}`;
      reply = encodeReply([], { code: known ? error.code : "EPROTO", message });
    }
    this.busy--;
    this.send(reply);
  }

  private send(frame: Uint8Array): void {
    if (this.closed) return;
    if (this.outbound.length > 0) {
      this.outbound.push(frame);
      return;
    }
    const sent = this.socket.write(frame);
    if (sent < frame.length && sent >= 0) this.outbound.push(frame.subarray(sent));
  }

  onDrain(): void {
    while (this.outbound.length > 0) {
      const frame = this.outbound[0]!;
      const sent = this.socket.write(frame);
      if (sent < frame.length) {
        if (sent > 0) this.outbound[0] = frame.subarray(sent);
        return;
      }
      this.outbound.shift();
    }
  }

  private async serve(request: Request): Promise<ReplyField[]> {
    if (request.op === "hello") return this.hello(request);
    const store = this.store;
    const lending = this.lending;
    if (!store || !lending) throw new PStoreError("EPROTO", "the program spoke before hello");
    switch (request.op) {
      case "create":
        await store.create(request.name, request.size);
        return [];
      case "delete":
        await lending.takeBack(request.name);
        await store.delete(request.name);
        return [];
      case "access": {
        const handed = await lending.handOver(request.name, request.mode);
        if (handed) return [{ u64: handed.offset }, { u64: handed.size }, { u32: handed.slot }, { u32: handed.word }];
        const view = request.mode === "read" ? await store.accessRead(request.name) : await store.accessReadWrite(request.name);
        if (this.closed) {
          // The program went while it waited: give the hold straight back.
          await (request.mode === "read" ? store.releaseRead(view) : store.releaseReadWrite(view)).catch(() => {});
          return [];
        }
        const offset = this.segment!.offsetOf(view);
        this.holds.set(offset, { name: request.name, view, mode: request.mode });
        return [{ u64: offset }, { u64: view.length }, { u32: NO_SLOT }, { u32: 0 }];
      }
      case "release": {
        const lent = lending.lentAt(request.offset);
        if (lent) {
          this.checkPages(lent.view, request.pages);
          await lending.returned(request.offset, request.pages);
          lending.lend(lent.name);
          return [];
        }
        const hold = this.holds.get(request.offset);
        if (!hold || hold.mode !== request.mode) throw new PStoreError("ESTALE", "the program released a hold it does not have");
        this.checkPages(hold.view, request.pages);
        this.holds.delete(request.offset);
        if (hold.mode === "read") {
          await store.releaseRead(hold.view);
        } else {
          this.segment!.markDirty(request.pages);
          await store.releaseReadWrite(hold.view);
        }
        // Kept cached by the servers: the program's next use needs no message. Lent before
        // the reply: lent after it, the program's next access comes first (measured) and asks.
        lending.lend(hold.name);
        return [];
      }
    }
  }

  private checkPages(view: Uint8Array, pages: Uint32Array): void {
    const pageSize = this.segment!.pageSize;
    const first = this.segment!.offsetOf(view) / pageSize;
    const count = Math.ceil(view.length / pageSize);
    for (const page of pages) {
      if (page < first || page >= first + count) throw new PStoreError("EINVAL", `page ${page} is not a page of the released datum`);
    }
  }

  private async hello(request: Extract<Request, { op: "hello" }>): Promise<ReplyField[]> {
    if (request.version !== AGENT_PROTOCOL_VERSION) {
      throw new PStoreError("EPROTO", `libpstore speaks agent protocol ${request.version}, this agent ${AGENT_PROTOCOL_VERSION}: use the library and binary of one pstore`);
    }
    if (this.store) throw new PStoreError("EPROTO", "hello twice");
    this.segmentPath = join(segmentDir(), `pstore-${process.pid}-${++segmentFiles}-${crypto.randomUUID()}`);
    const mapShared = (size: number, pageSize: number): MappedSegment => {
      const fd = openSync(this.segmentPath, "wx+", 0o600);
      try {
        // The lending table follows the segment in the same file.
        ftruncateSync(fd, size + LEND_TABLE_BYTES);
        this.table = SharedRegion.map(fd, size, LEND_TABLE_BYTES);
        this.segment = MappedSegment.mapSharedReadable(fd, size, pageSize);
        return this.segment;
      } finally {
        closeSync(fd);
      }
    };
    let store: Store & GrantLender;
    try {
      const options = { servers: request.servers || undefined, secret: request.secret || undefined, tlsCa: request.tlsCa || undefined };
      store = await connectLender(options, mapShared, (name) => this.lending?.recalling(name));
    } catch (error) {
      this.table?.unmap();
      this.removeSegmentFile();
      throw error;
    }
    if (this.closed) {
      await store.close();
      this.table?.unmap();
      this.removeSegmentFile();
      return [];
    }
    this.store = store;
    this.lending = new Lending(this.table!, store, this.segment!);
    return [{ u64: this.segment!.size }, { u32: this.segment!.pageSize }, { str: this.segmentPath }];
  }

  private removeSegmentFile(): void {
    if (!this.segmentPath) return;
    try {
      unlinkSync(this.segmentPath);
    } catch {
      // The program unlinks it once it has mapped it.
    }
  }

  /** The program is gone: its session ends now, not at its timeout. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.removeSegmentFile();
    // Not after the pending request: an access may wait for ever, and closing
    // the session is what takes its wait (and its holds) off the servers.
    const store = this.store;
    this.store = null;
    this.lending?.close();
    this.lending = null;
    await store?.close().catch(() => {});
    await this.queue.catch(() => {});
    this.table?.unmap();
    this.table = null;
  }
}

export class Agent {
  private listener: UnixSocketListener<Program> | null = null;
  private readonly programs = new Set<Program>();
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped: (() => void) | null = null;
  readonly done: Promise<void>;

  constructor(private readonly options: AgentOptions) {
    this.done = new Promise((resolve) => (this.stopped = resolve));
  }

  /** Listens on the socket; fails with EBUSY when another agent answers there. */
  async start(): Promise<void> {
    const path = this.options.socketPath;
    const bytes = Buffer.byteLength(path);
    if (bytes > UNIX_SOCKET_PATH_BYTES_MAX) {
      throw new PStoreError("EINVAL", `${path} is ${bytes} bytes: a Unix socket's path is at most ${UNIX_SOCKET_PATH_BYTES_MAX}; choose a shorter --socket`);
    }
    makePrivateDir(dirname(path));
    if (existsSync(path)) {
      if (await answers(path)) throw new PStoreError("EBUSY", `an agent already listens on ${path}`);
      // Only a dead agent's socket is removed: a file of the user's at that path is theirs.
      if (!lstatSync(path).isSocket()) throw new PStoreError("EEXIST", `${path} exists and is not a socket: not removing it; choose another --socket`);
      unlinkSync(path);
    }
    this.listener = Bun.listen<Program>({
      unix: path,
      socket: {
        open: (socket) => {
          socket.data = new Program(socket);
          this.programs.add(socket.data);
          this.touch();
        },
        data: (socket, chunk) => socket.data.onData(chunk),
        drain: (socket) => socket.data.onDrain(),
        close: (socket) => this.forget(socket.data),
        error: (socket) => this.forget(socket.data),
      },
    });
    this.touch();
  }

  private forget(program: Program): void {
    if (!this.programs.delete(program)) return;
    void program.close().finally(() => this.touch());
  }

  /** (Re)arms the idle exit when no program is connected. */
  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.options.idleExitMs > 0 && this.programs.size === 0) {
      this.idleTimer = setTimeout(() => {
        this.options.log(`no program for ${this.options.idleExitMs} ms: exiting`);
        void this.stop();
      }, this.options.idleExitMs);
    }
  }

  async stop(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.listener?.stop(true);
    this.listener = null;
    try {
      unlinkSync(this.options.socketPath);
    } catch {
      // Already gone.
    }
    await Promise.all([...this.programs].map((program) => program.close()));
    this.programs.clear();
    this.stopped?.();
  }
}

/**
 * Programs send their secret through the socket, and whoever can replace it
 * can pose as the agent: its directory (made if missing, mode 700) must be ours
 * and writable by us only.
 */
function makePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST" || (error as NodeJS.ErrnoException).code === "ENOTDIR") {
      throw new PStoreError("EINVAL", `the agent's socket directory ${dir} is not a directory (a file is in the way)`);
    }
    throw error;
  }
  const info = statSync(dir);
  const uid = process.getuid?.();
  if ((uid !== undefined && info.uid !== uid) || (info.mode & 0o022) !== 0) {
    throw new PStoreError("EINVAL", `the agent's directory ${dir} must belong to this user and be writable by nobody else (chmod 700)`);
  }
}

/** True when something accepts connections on the Unix socket. */
async function answers(path: string): Promise<boolean> {
  try {
    const socket = await Bun.connect({ unix: path, socket: { data() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}
