/** The production ClientHost: Bun sockets (Connection), the process's timers and clock, random session ids; the TLS CA. */
import { readFileSync } from "node:fs";
import { PStoreError } from "../errors";
import { Connection } from "./connection";
import type { ClientHost } from "./host";

export function bunHost(secret: string | undefined, tlsCa: string | undefined): ClientHost {
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
    dial: (address, events, timeoutMs) => Connection.open(address, events, timeoutMs, secret, tlsCa),
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
