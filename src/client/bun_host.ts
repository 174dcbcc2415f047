/** The production ClientHost: Bun sockets (Connection), the process's timers and clock, random session ids; the TLS CA. */
import { readFileSync } from "node:fs";
import { PStoreError } from "../errors";
import { Connection } from "./connection";
import type { ClientHost } from "./host";
import { ConnectionPool } from "./shared";

/** The process's shared connections, one pool per secret and CA (shared.ts). */
const pools = new Map<string, ConnectionPool>();

function poolFor(secret: string | undefined, tlsCa: string | undefined): ConnectionPool {
  const key = JSON.stringify([secret ?? null, tlsCa ?? null]);
  let pool = pools.get(key);
  if (!pool) {
    pool = new ConnectionPool((address, events, timeoutMs) => Connection.open(address, events, timeoutMs, secret, tlsCa));
    pools.set(key, pool);
  }
  return pool;
}

/** `share`: the stores of this process share one connection to each server (shared.ts); false: one of their own. */
export function bunHost(secret: string | undefined, tlsCa: string | undefined, share = true): ClientHost {
  const pool = share ? poolFor(secret, tlsCa) : null;
  return {
    nowMs: () => performance.now(),
    after(ms, fn) {
      const timer = setTimeout(fn, ms);
      return { cancel: () => clearTimeout(timer) };
    },
    every(ms, fn) {
      const timer = setInterval(fn, ms);
      timer.unref?.();
      return { cancel: () => clearInterval(timer) };
    },
    dial: (address, events, timeoutMs) => (pool ? pool.dial(address, events, timeoutMs) : Connection.open(address, events, timeoutMs, secret, tlsCa)),
    newSessionId: randomSessionId,
  };
}

/** The CA as PEM text, read once: a bad path is EINVAL now, not a connection failure later. */
export function readCa(ca: string | undefined): string | undefined {
  if (ca === undefined || ca.includes("-----BEGIN")) return ca;
  try {
    return readFileSync(ca, "utf8");
  } catch (error) {
    throw new PStoreError("EINVAL", `cannot read the TLS CA ${ca}: ${(error as Error).message}`);
  }
}

export function randomSessionId(): number {
  const words = crypto.getRandomValues(new Uint32Array(2));
  // 53 bits: exact as a JS number and on the wire (u53); never 0 (the system session).
  return (words[0]! & 0x1f_ffff) * 0x1_0000_0000 + words[1]! || 1;
}
