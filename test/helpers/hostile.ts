/**
 * Raw connections for hostile-client tests: node:net sockets (they can bind a
 * local address, so a test plays several hosts over 127.0.0.0/8) that say
 * hello and then do what a hostile client does — nothing, or announce a huge
 * frame and send part of it.
 */
import net from "node:net";
import { FRAME_BYTES_MAX } from "../../src/constants";
import { FrameDecoder, type Message, NONCE_BYTES, decodeMessage, encodeMessage, helloMessage } from "../../src/wire";

export class HostileConnection {
  readonly messages: Message[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder(FRAME_BYTES_MAX);
  private readonly waiters = new Set<() => void>();
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    this.closedPromise = new Promise((resolve) => {
      socket.on("close", () => {
        this.closed = true;
        resolve();
        this.wake();
      });
    });
    socket.on("error", () => {});
    socket.on("data", (bytes: Buffer) => {
      this.decoder.push(new Uint8Array(bytes), (frame) => this.messages.push(decodeMessage(frame.type, frame.body)));
      this.wake();
    });
  }

  /** Connects from `localAddress` (any 127.x.y.z on Linux) and sends a client hello. */
  static open(address: string, localAddress: string): Promise<HostileConnection> {
    const colon = address.lastIndexOf(":");
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), localAddress });
      socket.once("error", reject);
      socket.once("connect", () => {
        const connection = new HostileConnection(socket);
        socket.write(encodeMessage(helloMessage("client", 0, new Uint8Array(NONCE_BYTES))));
        resolve(connection);
      });
    });
  }

  /** The first message after the hello: the welcome, or the error that refused us; null if none came in time. */
  answer(timeoutMs: number): Promise<Message | null> {
    return this.until(() => this.messages[0] ?? (this.closed ? null : undefined), timeoutMs);
  }

  /** Waits for the server to close the connection; false if it did not in time. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    return (await this.until(() => (this.closed ? true : undefined), timeoutMs)) ?? false;
  }

  /** Writes and waits until the kernel took the bytes (or the connection broke). */
  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      this.socket.write(bytes, () => resolve());
    });
  }

  error(): { code: string; message: string } | null {
    const found = this.messages.find((m) => m.type === "error");
    return found?.type === "error" ? found.body : null;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private until<T>(probe: () => T | undefined, timeoutMs: number): Promise<T | null> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve) => {
      const check = () => {
        const value = probe();
        if (value === undefined) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(null);
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** VmRSS of a process in MiB, from /proc. */
export { rssMiB } from "./fuzz";
