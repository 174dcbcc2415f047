/**
 * What happened in a run: the last events in a ring (printed when an
 * invariant fails) and a running hash of every event (two runs of one seed
 * must give the same hash). Entries keep their details as objects and are
 * formatted only when printed, so tracing costs little on the fast path.
 */
import type { Message, PeerMessage } from "../wire";
import { describeUpdate } from "./applied";
import { RunningHash, fnvString } from "./hash";

type Detail = string | number | PeerMessage | Message | (() => string) | undefined;

interface Entry {
  atMs: number;
  what: string;
  detail: Detail;
}

export class Trace {
  private readonly ring: (Entry | undefined)[];
  private next = 0;
  readonly hash = new RunningHash();
  count = 0;
  private readonly kindHashes = new Map<string, number>();

  constructor(readonly capacity: number) {
    this.ring = new Array(capacity);
  }

  add(atMs: number, what: string, detail?: Detail): void {
    this.count++;
    let h = this.kindHashes.get(what);
    if (h === undefined) {
      h = fnvString(what);
      this.kindHashes.set(what, h);
    }
    this.hash.add(h);
    this.hash.add(Math.round(atMs * 1000));
    if (typeof detail === "number") this.hash.add(detail);
    else if (typeof detail === "string") this.hash.addString(detail);
    else if (detail !== undefined && typeof detail === "object" && "type" in detail) this.hash.add(fnvString(detail.type));
    this.ring[this.next] = { atMs, what, detail };
    this.next = (this.next + 1) % this.capacity;
  }

  /** The last `n` entries, oldest first, one line each. */
  lines(n = this.capacity): string[] {
    const out: string[] = [];
    const count = Math.min(n, this.capacity, this.count);
    for (let i = count; i >= 1; i--) {
      const entry = this.ring[(this.next - i + this.capacity * 2) % this.capacity];
      if (entry) out.push(`${entry.atMs.toFixed(3).padStart(10)} ms  ${entry.what}${formatDetail(entry.detail)}`);
    }
    return out;
  }
}

function formatDetail(detail: Detail): string {
  if (detail === undefined) return "";
  if (typeof detail === "function") return ` ${detail()}`;
  if (typeof detail === "string" || typeof detail === "number") return ` ${detail}`;
  if ("body" in detail) return ` ${describeMessage(detail)}`;
  return ` ${describePeerMessage(detail)}`;
}

export function describePeerMessage(m: PeerMessage): string {
  switch (m.type) {
    case "heartbeat":
      return `heartbeat e${m.epoch} [${m.chain}] ${m.status} at ${m.appliedSeq}@${m.lastEpoch}${m.bootPeers ? ` heard [${m.bootPeers}]` : ""}${m.unheard ? ` unheard [${m.unheard}]` : ""}`;
    case "ahead":
      return `ahead e${m.epoch}: holds ${m.baseSeq}@${m.baseEpoch}, at ${m.appliedSeq}`;
    case "pull":
      return `pull e${m.epoch} after ${m.baseSeq}`;
    case "config":
      return `config e${m.epoch} [${m.chain}]${m.issued ? "" : " (completed)"}`;
    case "sync_request":
      return `sync_request e${m.epoch} [${m.chain}]`;
    case "sync_reply":
      return `sync_reply e${m.epoch} at ${m.appliedSeq}@${m.lastEpoch}`;
    case "forward": {
      const first = m.updates[0];
      const last = m.updates[m.updates.length - 1];
      const what = m.updates.length === 1 ? describeUpdate(first!) : `${first?.seq}..${last?.seq}`;
      return `forward e${m.epoch} ${what}`;
    }
    case "snapshot":
      return `snapshot e${m.epoch} at ${m.seq}@${m.lastEpoch} (${m.bytes.length} B)`;
    case "ack":
      return `ack e${m.epoch} ${m.seq}`;
    case "synced":
      return `synced e${m.epoch} ${m.seq}@${m.seqEpoch}`;
    case "join":
      return `join at ${m.appliedSeq}@${m.lastEpoch}`;
    case "caught_up":
      return `caught_up e${m.epoch} joiner ${m.joiner}`;
    case "config_prepare":
      return `config_prepare b${m.ballot} on e${m.baseEpoch}`;
    case "config_promise":
      return `config_promise b${m.ballot} at e${m.configEpoch}${m.accepted ? ` accepted b${m.accepted.ballot} e${m.accepted.epoch} [${m.accepted.chain}] on e${m.accepted.baseEpoch}` : ""}`;
    case "config_propose":
      return `config_propose b${m.ballot} e${m.epoch} [${m.chain}] on e${m.baseEpoch}${m.formed ? " (formed)" : ""}`;
    case "config_accept":
      return `config_accept b${m.ballot}`;
    case "config_refuse":
      return `config_refuse b${m.ballot} (promised b${m.promised})`;
  }
}

export function describeMessage(m: Message): string {
  switch (m.type) {
    case "request": {
      const op = m.body.op;
      const detail =
        op.type === "acquire" ? ` ${op.mode} ${op.name}` : op.type === "release" ? ` hold ${op.holdId}${op.pages.length ? " +pages" : ""}` : op.type === "create" || op.type === "delete" ? ` ${op.name}` : op.type === "cancel" ? ` ${op.acquireReqNo}` : "";
      return `request s${m.body.session}/${m.body.reqNo} ${op.type}${detail}`;
    }
    case "reply": {
      const r = m.body.reply;
      const detail = r.type === "error" ? ` ${r.code}` : r.type === "granted" ? ` ${r.mode} ${r.name} hold ${r.holdId} v${r.version}` : r.type === "released" ? ` v${r.version}${r.cached ? " cached" : ""}` : "";
      return `reply s${m.body.session}/${m.body.reqNo} ${r.type}${detail}`;
    }
    case "subscribe":
      return `subscribe s${m.body.session} waiting [${m.body.waiting}]`;
    case "config":
      return `config e${m.body.epoch} [${m.body.chain}]`;
    case "welcome":
      return `welcome from ${m.body.serverId} e${m.body.epoch} [${m.body.chain}]`;
    case "heartbeat":
      return `heartbeat s${m.body.session}`;
    case "recall":
      return `recall s${m.body.session} hold ${m.body.holdId} ${m.body.name}`;
    case "error":
      return `error ${m.body.code}: ${m.body.message}`;
    default:
      return m.type;
  }
}
