/**
 * The simulated network: connections that carry bytes. A connection has two
 * pipes (one per direction), each FIFO with its own latency, as TCP; different
 * connections reorder freely. What a pipe carries is cut into chunks at
 * arbitrary byte boundaries on some connections (a frame arrives in pieces,
 * or one byte at a time), so the receiving FrameDecoder sees what TCP may
 * give it; on half of them, what is sent while earlier bytes are still on their
 * way starts in the same read as those, as TCP merges writes, so the receiver
 * handles several messages (or a frame's end and the next one's start) before
 * any promise continuation runs. A connection that breaks loses what it still
 * carried.
 *
 * Servers reach each other over one connection per direction, dialled by the
 * sender (as src/server/dialer.ts does); clients dial the servers they use.
 */
import type { AppliedHistory } from "./applied";
import type { Rng } from "./prng";

/** One direction of a connection: FIFO, with its own latency. */
export class Pipe {
  /** Broken: whatever is still in flight on it is lost. */
  broken = false;
  /** Arrival time of the last chunk sent on it: the next one cannot overtake it. */
  lastAtMs = 0;
  /** The last chunk sent on it, while it has not arrived: a coalescing connection adds to it. */
  waiting: { chunks: Uint8Array[] } | null = null;

  constructor(readonly latencyMs: number) {}

  /** When a chunk sent now arrives: latency, jitter, rare stalls; never before the previous one. */
  arrival(nowMs: number, rng: Rng, stallMsMax: number): number {
    let delay = this.latencyMs + rng.next() * this.latencyMs;
    if (stallMsMax > 0 && rng.chance(0.002)) delay += rng.next() * stallMsMax;
    const atMs = Math.max(nowMs + delay, this.lastAtMs);
    this.lastAtMs = atMs;
    return atMs;
  }
}

/** Who is at the dialling end of a connection: a server dialling a peer, or a client. */
export type Dialler = { kind: "server"; id: number; incarnation: number } | { kind: "client"; slot: number; incarnation: number };

/** A connection from its dialler to a server (the acceptor). */
export class SimConn {
  /** Dialler to acceptor. */
  readonly up: Pipe;
  /** Acceptor to dialler. */
  readonly down: Pipe;
  /** Each end's view: it closed or was told of the close (it sends and receives nothing more). */
  diallerClosed = false;
  acceptorClosed = false;
  /** The server has taken the connection (its node knows it). */
  accepted = false;
  /** A client's connection: its handshake completed at the client (a handshake cut no longer applies). */
  welcomed = false;
  /** A client's connection: nobody listened, the dial was refused (ECONNREFUSED). */
  refused = false;
  /** Chunks of at most this many bytes (Infinity: frames go whole). */
  readonly chunkBytesMax: number;
  /** Bytes sent while earlier ones have not arrived travel with them, as TCP merges writes into one read. */
  readonly coalesces: boolean;
  /** A peer connection: snapshots sent on it (by seq), with the history each brings, for the checker. */
  readonly snapshots = new Map<number, AppliedHistory>();
  /** A client connection: for each grant on its way down, the hash of the datum the client must end up with. */
  readonly expectedHashes: number[] = [];

  constructor(
    readonly id: number,
    readonly dialler: Dialler,
    readonly serverId: number,
    readonly serverIncarnation: number,
    latencyMs: number,
    chunkBytesMax: number,
    coalesces: boolean,
  ) {
    this.up = new Pipe(latencyMs);
    this.down = new Pipe(latencyMs);
    this.chunkBytesMax = chunkBytesMax;
    this.coalesces = coalesces;
  }

  /** Closed as the dialler (a client) knows it. */
  get closed(): boolean {
    return this.diallerClosed;
  }

  /** `bytes` in the chunks this connection delivers them in (`rng` draws the cuts). */
  chunks(bytes: Uint8Array, rng: Rng): Uint8Array[] {
    if (bytes.length <= this.chunkBytesMax && !(this.chunkBytesMax < Infinity && rng.chance(0.5))) return [bytes];
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; ) {
      const size = Math.max(1, Math.min(bytes.length - at, 1 + Math.floor(rng.next() * this.chunkBytesMax)));
      chunks.push(bytes.subarray(at, at + size));
      at += size;
    }
    return chunks;
  }
}

/** The connection a server dials to one peer. */
export class PeerLink {
  conn: SimConn | null = null;
  /** Dials fail until then (a cut that lasts). */
  blockedUntilMs = 0;
  /** The peer died silently: the dialler still thinks this connection is up, but nothing arrives. */
  blackHole = false;

  constructor(
    readonly from: number,
    readonly to: number,
  ) {}
}

export class Network {
  private nextConnId = 1;
  readonly links = new Map<string, PeerLink>();
  /** Base one-way latency per server pair, ms. */
  private readonly latency = new Map<string, number>();

  constructor(
    readonly serverIds: number[],
    private readonly rng: Rng,
  ) {
    for (const from of serverIds) {
      for (const to of serverIds) {
        if (from === to) continue;
        this.links.set(key(from, to), new PeerLink(from, to));
        const pair = key(Math.min(from, to), Math.max(from, to));
        if (!this.latency.has(pair)) this.latency.set(pair, 0.2 + rng.next() * (rng.chance(0.2) ? 20 : 3));
      }
    }
  }

  link(from: number, to: number): PeerLink {
    const link = this.links.get(key(from, to));
    if (!link) throw new Error(`no link ${from}>${to}`);
    return link;
  }

  linksFrom(from: number): PeerLink[] {
    return this.serverIds.filter((id) => id !== from).map((to) => this.link(from, to));
  }

  linksTo(to: number): PeerLink[] {
    return this.serverIds.filter((id) => id !== to).map((from) => this.link(from, to));
  }

  newPeerConn(from: { id: number; incarnation: number }, to: { id: number; incarnation: number }): SimConn {
    const latencyMs = this.latency.get(key(Math.min(from.id, to.id), Math.max(from.id, to.id))) ?? 1;
    return new SimConn(this.nextConnId++, { kind: "server", ...from }, to.id, to.incarnation, latencyMs, this.drawChunking(), this.rng.chance(0.5));
  }

  newClientConn(slot: number, incarnation: number, serverId: number, serverIncarnation: number): SimConn {
    const latencyMs = 0.2 + this.rng.next() * (this.rng.chance(0.2) ? 15 : 2);
    return new SimConn(this.nextConnId++, { kind: "client", slot, incarnation }, serverId, serverIncarnation, latencyMs, this.drawChunking(), this.rng.chance(0.5));
  }

  /** One connection in five cuts what it carries: into pieces of up to 64 bytes, or single bytes. */
  private drawChunking(): number {
    if (!this.rng.chance(0.2)) return Infinity;
    return this.rng.chance(0.3) ? 1 : 1 + Math.floor(this.rng.next() * 64);
  }
}

function key(from: number, to: number): string {
  return `${from}>${to}`;
}
