/**
 * The simulated network. Servers reach each other over one connection per
 * direction, dialled by the sender (as src/server/peers.ts does): messages on
 * one connection arrive in order (TCP), different connections reorder freely.
 * A connection that breaks loses what it still carried; only its dialler
 * learns of it (onPeerDisconnected), and re-dials every heartbeat. Clients
 * hold their own connections to servers, FIFO both ways.
 */
import type { Rng } from "./prng";

/** One TCP connection in one direction: FIFO, with its own latency. */
export class Connection {
  /** Broken: whatever is still in flight on it is lost. */
  broken = false;
  /** Arrival time of the last message sent on it: the next one cannot overtake it. */
  lastAtMs = 0;

  constructor(
    readonly id: number,
    readonly latencyMs: number,
  ) {}

  /** When a message sent now arrives: latency, jitter, rare stalls; never before the previous one. */
  arrival(nowMs: number, rng: Rng, stallMsMax: number): number {
    let delay = this.latencyMs + rng.next() * this.latencyMs;
    if (stallMsMax > 0 && rng.chance(0.002)) delay += rng.next() * stallMsMax;
    const atMs = Math.max(nowMs + delay, this.lastAtMs);
    this.lastAtMs = atMs;
    return atMs;
  }
}

/** The connection a server dials to one peer. */
export class PeerLink {
  conn: Connection | null = null;
  dialling = false;
  lastAttemptMs = -Infinity;
  /** Dials fail until then (a cut that lasts). */
  blockedUntilMs = 0;
  /** The peer died silently: the dialler still thinks this connection is up, but nothing arrives. */
  blackHole = false;

  constructor(
    readonly from: number,
    readonly to: number,
  ) {}
}

/** A client's connection to a server (both directions). */
export class ClientConn {
  closed = false;
  /** The server has seen the hello: it knows this connection. */
  accepted = false;
  readonly up: Connection;
  readonly down: Connection;
  /** Nobody listened: the dial was refused (ECONNREFUSED). */
  refused = false;

  constructor(
    readonly id: number,
    readonly clientSlot: number,
    readonly clientIncarnation: number,
    readonly serverId: number,
    readonly serverIncarnation: number,
    latencyMs: number,
  ) {
    this.up = new Connection(id, latencyMs);
    this.down = new Connection(id, latencyMs);
  }
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
    return this.links.get(key(from, to))!;
  }

  linksFrom(from: number): PeerLink[] {
    return this.serverIds.filter((id) => id !== from).map((to) => this.link(from, to));
  }

  linksTo(to: number): PeerLink[] {
    return this.serverIds.filter((id) => id !== to).map((from) => this.link(from, to));
  }

  newPeerConnection(from: number, to: number): Connection {
    return new Connection(this.nextConnId++, this.latency.get(key(Math.min(from, to), Math.max(from, to)))!);
  }

  newClientConn(slot: number, incarnation: number, serverId: number, serverIncarnation: number): ClientConn {
    const latencyMs = 0.2 + this.rng.next() * (this.rng.chance(0.2) ? 15 : 2);
    return new ClientConn(this.nextConnId++, slot, incarnation, serverId, serverIncarnation, latencyMs);
  }
}

function key(from: number, to: number): string {
  return `${from}>${to}`;
}
