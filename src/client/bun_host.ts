/** The production ClientHost: Bun sockets (Connection), the process's timers and clock. */
import { Connection } from "./connection";
import { randomSessionId } from "./helpers";
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
