/**
 * Carries out a replica's Readys for a server node (node.ts): PERSIST BEFORE SEND
 * (core/ready.ts), the one place both hosts obey it. A turn's Readys are queued and
 * released together after it, behind one disk write (and sync); what they send then
 * leaves on the connection each message is for.
 */
import { type Outbound, type Ready, type Replica, lastSeqOf } from "../core";
import { encodeMessage, encodePeerParts } from "../wire";
import type { ConnId, NodeHost, NodeObserver } from "./host";

/** Where each kind of message leaves: the node knows its connections. */
export interface CarrierRoutes {
  /** Our ready connection to peer `id`, or null (the message is dropped: the chain protocol resynchronises). */
  peerConn(id: number): ConnId | null;
  /** The connection that delivers session `session`'s replies and recalls, if any. */
  sessionConn(session: number): ConnId | undefined;
  /** Every open client connection (a new head or tail is announced to all). */
  clientConns(): Iterable<ConnId>;
  /** The config frame body clients are told for `view`. */
  configForClients(view: { epoch: number; chain: number[] }): { epoch: number; chain: string[] };
}

export class ReadyCarrier {
  private queued: Ready[] = [];
  private flushScheduled = false;

  constructor(
    private readonly replica: Replica,
    private readonly host: NodeHost,
    private readonly routes: CarrierRoutes,
    private readonly observer: NodeObserver,
  ) {}

  /** Queues a step's Ready: the queue is released after the current event, all of it behind one disk sync. */
  perform(ready: Ready): void {
    for (const note of ready.notes) this.host.log.info(note);
    if (ready.persist.length === 0 && ready.send.length === 0) return;
    this.queued.push(ready);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.host.defer(() => this.flush());
  }

  /** Releases what is queued now (before a checkpoint, a stop, a long frame). */
  flush(): void {
    this.flushScheduled = false;
    if (this.queued.length === 0) return;
    const readys = this.queued;
    this.queued = [];
    this.release(readys);
  }

  /**
   * The disk work of these Readys is written and synced, in order, and only then does
   * anything they send leave (but the leading forwards: core/ready.ts). The disk completes
   * batches in order, so a later batch's messages never overtake an earlier batch's disk work.
   */
  private release(readys: Ready[]): void {
    const persist = readys.length === 1 ? readys[0]!.persist : readys.flatMap((ready) => ready.persist);
    let send = readys.length === 1 ? readys[0]!.send : readys.flatMap((ready) => ready.send);
    if (this.host.disk.waiting) send = this.sendHeartbeatsNow(send);
    let early = 0;
    while (early < send.length && isForward(send[early]!)) early++;
    // The forwards that lead a batch of log records leave before our own write (one system
    // call less on the chain's path per hop): what each mode promises rests on the tail (below).
    // Not while the disk is full (updates wait), nor before a configuration or checkpoint is on disk.
    const leadBeforeWrite = early > 0 && !this.host.disk.waiting && persist.every((item) => item.kind === "log");
    if (leadBeforeWrite) this.host.batch(() => this.sendRange(send.slice(0, early), 0));
    if (!this.replica.awaitsSync) {
      // --fsync off/batch promise what survives a crash of N-1 servers, or of every process
      // once the tail has written: the tail's reply and our acknowledgement wait for our write.
      if (!leadBeforeWrite) early = 0;
      this.host.disk.write(persist, () => this.host.batch(() => this.sendRange(send, early)));
      return;
    }
    // --fsync always (core/chain_sync.ts): the next server writes and syncs while we sync (the
    // leading forwards of a batch that also holds a configuration or checkpoint leave once it
    // is written); the rest waits for our sync, and the replica then learns how far we are
    // durable: the tail replies only once every server of the chain has synced the update.
    const durableThrough = lastSeqOf(persist);
    this.host.disk.write(
      persist,
      () => {
        this.host.batch(() => this.sendRange(send, early));
        if (durableThrough > 0) this.releaseNow(this.replica.onDurable(durableThrough));
      },
      early > 0 && !leadBeforeWrite ? () => this.host.batch(() => this.sendRange(send.slice(0, early), 0)) : undefined,
    );
  }

  /**
   * While the disk is full, what must be written waits, and what it sends with it; a heartbeat
   * does not. It says what this server holds (its durable point only what is synced) and that
   * its disk is full; held back, the server fell silent and the others removed it from the
   * chain instead of refusing new data (test/disk.test.ts, a full disk on a follower).
   */
  private sendHeartbeatsNow(send: Outbound[]): Outbound[] {
    const rest: Outbound[] = [];
    for (const out of send) {
      if (out.kind === "peer" && out.message.type === "heartbeat") this.sendOut(out);
      else rest.push(out);
    }
    return rest;
  }

  /** Carries out a Ready at once (it follows a disk sync: nothing to wait for before it). */
  private releaseNow(ready: Ready): void {
    for (const note of ready.notes) this.host.log.info(note);
    if (ready.persist.length > 0 || ready.send.length > 0) this.release([ready]);
  }

  private sendRange(send: Outbound[], from: number): void {
    for (let i = from; i < send.length; i++) this.sendOut(send[i]!);
  }

  private sendOut(out: Outbound): void {
    switch (out.kind) {
      case "peer": {
        const conn = this.routes.peerConn(out.to);
        if (conn === null) return; // dropped: the chain protocol resynchronises
        this.observer.sentPeer?.(conn, out.to, out.message);
        for (const part of encodePeerParts(out.message)) this.host.send(conn, part);
        return;
      }
      case "reply": {
        const conn = this.routes.sessionConn(out.session);
        if (conn === undefined) {
          this.host.log.debug(`reply to session ${out.session} request ${out.reqNo} dropped: no connection (it subscribes again)`);
          return;
        }
        const body = { session: out.session, reqNo: out.reqNo, reply: out.reply, pages: out.pages };
        this.observer.sentReply?.(conn, body);
        return this.host.send(conn, encodeMessage({ type: "reply", body }));
      }
      case "recall": {
        // Over the connection the session's requests or heartbeats come on (we are its head).
        const conn = this.routes.sessionConn(out.recall.session);
        if (conn === undefined) return;
        this.observer.sentRecall?.(conn, out.recall);
        return this.host.send(conn, encodeMessage({ type: "recall", body: out.recall }));
      }
      case "announce": {
        // Clients must learn a new head or tail: tell every connected client.
        const frame = encodeMessage({ type: "config", body: this.routes.configForClients(out.view) });
        for (const conn of this.routes.clientConns()) this.host.send(conn, frame);
        return;
      }
    }
  }
}

function isForward(out: Outbound): boolean {
  return out.kind === "peer" && out.message.type === "forward";
}
