/** How the CLI shows the store's shapes to people (tables) and in one line (pipes). */
import type { ClusterStatus, DatumInfo, ServerStatus } from "../client/types.ts";
import { formatBytes } from "./flags.ts";
import { formatTable, type Style } from "./output.ts";

const _CHAIN_ROLES = new Set(["head", "middle", "tail", "single"]);

export function formatStatusTable(status: ClusterStatus, style: Style): string {
  // The servers listed after the chain (down, joining) are not part of it.
  const members = status.chain.filter((server) => _CHAIN_ROLES.has(server.role));
  const chain = members.length === 0 ? "(none serving)" : members.map((server) => server.address).join(" -> ");
  const head = `epoch ${status.epoch}   segment ${formatBytes(status.segmentSize)}   pages ${formatBytes(status.pageSize)}   chain ${chain}`;
  // `#` is the server's number (status --json's id, kill N and restart N), not the row.
  const rows = status.chain.map((server) => [
    String(server.id),
    server.address,
    server.role,
    _colorState(_stateText(server), style),
    String(server.appliedSeq),
    String(server.lag),
    server.lastHeartbeatMsAgo === null ? "-" : `${server.lastHeartbeatMsAgo} ms ago`,
  ]);
  const table = formatTable(["#", "ADDRESS", "ROLE", "STATE", "APPLIED", "LAG", "HEARTBEAT"], rows, style);
  return `${head}\n${table}`;
}

/** `epoch 3: 127.0.0.1:7401 head serving seq 10 lag 0 -> 127.0.0.1:7402 tail serving seq 10 lag 0` */
export function formatStatusLine(status: ClusterStatus): string {
  // "down down" says it once.
  const chain = status.chain.map(
    (server) =>
      `${server.address} ${server.role === server.state ? server.role : `${server.role} ${_stateText(server)}`} seq ${server.appliedSeq} lag ${server.lag}`,
  );
  return `epoch ${status.epoch}: ${chain.length === 0 ? "(no server)" : chain.join(" -> ")}`;
}

function _stateText(server: ServerStatus): string {
  return server.diskFull ? `${server.state}, disk full` : server.state;
}

function _colorState(state: string, style: Style): string {
  if (state === "serving") return style.green(state);
  if (state === "down") return style.red(state);
  return style.yellow(state);
}

export function formatDatumLine(info: DatumInfo): string {
  return [
    `name=${quoteWord(info.name)}`,
    `size=${info.size}`,
    `offset=${info.offset}`,
    `version=${info.version}`,
    `readers=${info.readers}`,
    `writer=${info.writer ? "yes" : "no"}`,
    `cached=${_cached(info)}`,
    `waiters=${info.waiters}`,
  ].join(" ");
}

export function formatDatumTable(data: DatumInfo[], style: Style): string {
  const rows = data.map((info) => [
    quoteWord(info.name),
    String(info.size),
    String(info.offset),
    String(info.version),
    _holds(info),
    String(info.waiters),
  ]);
  return formatTable(["NAME", "SIZE", "OFFSET", "VERSION", "HOLDS", "WAITERS"], rows, style);
}

function _holds(info: DatumInfo): string {
  const inUse = info.writer ? "writer" : info.readers > 0 ? `${info.readers} reader${info.readers > 1 ? "s" : ""}` : "";
  const cached = _cached(info);
  if (cached === "none") return inUse || "-";
  return inUse ? `${inUse}, cached ${cached}` : `cached ${cached}`;
}

/** Cached grants (released, kept by their clients, each perhaps in use without a message): apart from holds in use. */
function _cached(info: DatumInfo): string {
  // Absent from servers older than cached holds.
  if (info.cachedWriter) return "writer";
  const readers = info.cachedReaders ?? 0;
  if (readers > 0) return `${readers} reader${readers > 1 ? "s" : ""}`;
  return "none";
}

/** A word as the shell's tokenizer reads it back: bare when plain, else in double quotes with escapes. */
export function quoteWord(word: string): string {
  if (word !== "" && /^[^\s"'\\#]+$/.test(word)) return word;
  return JSON.stringify(word);
}
