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
  const applied = (id: number) =>
    id === replica.selfId ? replica.state.appliedSeq : (replica.peerViews.get(id)?.appliedSeq ?? 0);
  const newest = Math.max(0, ...addresses.map((_, i) => applied(i + 1)));
  const describe = (id: number): ServerStatus => {
    const view = replica.peerViews.get(id);
    const self = id === replica.selfId;
    const heardMsAgo = self ? 0 : view ? Math.round(nowMs - view.lastHeardMs) : null;
    const alive = self || (heardMsAgo !== null && heardMsAgo <= options.suspectMs);
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
      state: !alive ? "down" : index >= 0 && status === "member" ? "serving" : "catching-up",
      lastHeartbeatMsAgo: Number.isFinite(heardMsAgo) ? heardMsAgo : null,
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
