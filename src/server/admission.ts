/**
 * Who may hold a connection slot: limits per address before and after the
 * handshake, a share of the slots kept for peers, and the closing of client
 * connections that went silent. Without them, a few thousand connections that
 * say hello and nothing more lock every real client out (issue 11).
 */
import {
  CLIENTS_PER_ADDRESS_MAX,
  CONNECTIONS_KEPT_FOR_PEERS,
  CONNECTIONS_MAX,
  HANDSHAKES_PER_ADDRESS_MAX,
} from "../constants";

export type Stage = "handshake" | "client" | "peer";

export interface Refusal {
  code: "ELIMIT";
  message: string;
}

export class Admission {
  private readonly slots = new Map<object, { address: string; stage: Stage }>();
  /** Connections of each address in their handshake, oldest first. */
  private readonly handshakes = new Map<string, Set<object>>();
  private readonly clients = new Map<string, number>();
  private clientsTotal = 0;

  /**
   * A new connection from `address`: a refusal, or it takes a slot (stage
   * "handshake"). When its address has too many handshakes under way, the
   * oldest of them is returned to be closed: a real client finishes its
   * handshake in milliseconds, so it gets through a flood from its own host.
   */
  accept(connection: object, address: string): { refused: Refusal } | { evict: object | null } {
    if (this.slots.size >= CONNECTIONS_MAX) return { refused: limit(`the server accepts at most ${CONNECTIONS_MAX} connections`) };
    let pending = this.handshakes.get(address);
    if (!pending) this.handshakes.set(address, (pending = new Set()));
    let evict: object | null = null;
    if (pending.size >= HANDSHAKES_PER_ADDRESS_MAX) evict = pending.values().next().value!;
    this.slots.set(connection, { address, stage: "handshake" });
    pending.add(connection);
    return { evict };
  }

  /** Why an evicted connection is closed. */
  static readonly evicted: Refusal = limit(`too many connections of one address in their handshake (${HANDSHAKES_PER_ADDRESS_MAX}): the oldest is closed`);

  /** The handshake is done and the connection is a client: a refusal (it keeps its slot until it closes), or null. */
  admitClient(connection: object): Refusal | null {
    const slot = this.slots.get(connection);
    if (!slot || slot.stage !== "handshake") return null;
    const clientsMax = CONNECTIONS_MAX - CONNECTIONS_KEPT_FOR_PEERS;
    if (this.clientsTotal >= clientsMax) return limit(`the server serves at most ${clientsMax} client connections`);
    if ((this.clients.get(slot.address) ?? 0) >= CLIENTS_PER_ADDRESS_MAX) {
      return limit(`the server serves at most ${CLIENTS_PER_ADDRESS_MAX} client connections of ${slot.address}`);
    }
    this.moveTo(connection, slot, "client");
    return null;
  }

  /** The handshake is done and the connection is a peer server: peers have slots kept for them. */
  admitPeer(connection: object): void {
    const slot = this.slots.get(connection);
    if (slot?.stage === "handshake") this.moveTo(connection, slot, "peer");
  }

  /** The connection closed: its slot is free. */
  release(connection: object): void {
    const slot = this.slots.get(connection);
    if (!slot) return;
    this.moveTo(connection, slot, "peer"); // out of the per-address counts
    this.slots.delete(connection);
  }

  get connections(): number {
    return this.slots.size;
  }

  private moveTo(connection: object, slot: { address: string; stage: Stage }, stage: Stage): void {
    if (slot.stage === "handshake") {
      const pending = this.handshakes.get(slot.address)!;
      pending.delete(connection);
      if (pending.size === 0) this.handshakes.delete(slot.address);
    }
    if (slot.stage === "client") {
      bump(this.clients, slot.address, -1);
      this.clientsTotal--;
    }
    slot.stage = stage;
    if (stage === "client") {
      bump(this.clients, slot.address, 1);
      this.clientsTotal++;
    }
  }
}

function limit(message: string): Refusal {
  return { code: "ELIMIT", message: `${message}; try again later` };
}

function bump(counts: Map<string, number>, address: string, delta: number): void {
  const next = (counts.get(address) ?? 0) + delta;
  if (next <= 0) counts.delete(address);
  else counts.set(address, next);
}
