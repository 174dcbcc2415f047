/** The cluster as one server sees it, for `pstore status`. */
import { present } from "../assert";
import type { ClusterStatus, ServerStatus } from "../client/types";
import { PAGE_SIZE } from "../constants";
import type { Replica } from "../core";

export function clusterStatus(
  replica: Replica,
  addresses: string[],
  nowMs: number,
  options: { segmentSize: number; suspectMs: number },
): ClusterStatus {
  const { chain, epoch } = replica.config;
  const mine = replica.state.appliedSeq;
  const myIndex = chain.indexOf(replica.selfId);
  const heard = (id: number) => replica.peerViews.get(id)?.appliedSeq ?? 0;
  const heardMsAgo = (id: number) => {
    const view = replica.peerViews.get(id);
    return id === replica.selfId ? 0 : view ? Math.round(nowMs - view.lastHeardMs) : null;
  };
  const isAlive = (id: number) => {
    const ago = heardMsAgo(id);
    return ago !== null && ago <= options.suspectMs;
  };
  // A live server upstream of us in the chain applied everything we did (updates flow
  // head to tail): its heartbeat's older number is only heartbeat age, not lag.
  const upstream = (id: number) => myIndex > 0 && chain.indexOf(id) >= 0 && chain.indexOf(id) < myIndex && isAlive(id);
  const applied = (id: number) => (id === replica.selfId ? mine : upstream(id) ? Math.max(heard(id), mine) : heard(id));
  const newest = Math.max(0, ...addresses.map((_, i) => applied(i + 1)));
  // A member's last heartbeat may predate the configuration that made it one (just after start):
  // that status is stale, and the configuration, formed with it, says it serves.
  const staleView = (view: { epoch: number } | undefined) => view !== undefined && view.epoch < epoch;
  const describe = (id: number): ServerStatus => {
    const view = replica.peerViews.get(id);
    const self = id === replica.selfId;
    const alive = isAlive(id);
    const index = chain.indexOf(id);
    const status = self ? replica.status : view?.status;
    const role: ServerStatus["role"] = !alive
      ? "down"
      : index < 0
        ? "joining"
        : chain.length === 1
          ? "single"
          : index === 0
            ? "head"
            : index === chain.length - 1
              ? "tail"
              : "middle";
    return {
      id,
      address: present(addresses[id - 1], `chain member ${id} is not in --peers`),
      role,
      appliedSeq: applied(id),
      lag: newest - applied(id),
      state: !alive ? "down" : index >= 0 && (status === "member" || staleView(view)) ? "serving" : "catching-up",
      lastHeartbeatMsAgo: Number.isFinite(heardMsAgo(id)) ? heardMsAgo(id) : null,
      diskFull: alive && (self ? replica.diskFull : view?.diskFull === true),
    };
  };
  const others = addresses.map((_, i) => i + 1).filter((id) => !chain.includes(id));
  return {
    epoch,
    segmentSize: options.segmentSize,
    pageSize: PAGE_SIZE,
    chain: [...chain, ...others].map(describe),
  };
}
