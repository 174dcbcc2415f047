/** Bounded waits: for a hold (a timeout or an abort withdraws the acquire with a cancel first), for a reply. */
import { PStoreError } from "../errors";
import type { ClusterLink } from "./cluster";
import type { ClientHost, TimerHandle } from "./host";
import type { AccessOptions } from "./types";

/** Rejects when the wait times out or is aborted, after the cancel is applied (the queue is clean). */
export function watchWait(host: ClientHost, cluster: ClusterLink, reqNo: number, cancel: () => Promise<unknown>, options: AccessOptions) {
  let timer: TimerHandle | null = null;
  let onAbort: (() => void) | null = null;
  const promise = new Promise<never>((_, reject) => {
    const giveUp = (error: PStoreError) => {
      if (!cluster.markCancelled(reqNo)) return;
      cancel().then(
        () => {
          cluster.forget(reqNo);
          reject(error);
        },
        (cancelError) => reject(cancelError),
      );
    };
    if (options.timeoutMs !== undefined) {
      timer = host.after(options.timeoutMs, () => giveUp(new PStoreError("ETIMEDOUT", `no hold within ${options.timeoutMs} ms`)));
    }
    if (options.signal) {
      onAbort = () => giveUp(new PStoreError("ECANCELED", "the wait was aborted"));
      options.signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  promise.catch(() => {});
  return {
    promise,
    dispose: () => {
      timer?.cancel();
      if (onAbort) options.signal?.removeEventListener("abort", onAbort);
    },
  };
}

/** The promise, or EUNAVAILABLE after `ms`. */
export function withTimeout<T>(host: ClientHost, promise: Promise<T>, ms: number): Promise<T> {
  let timer: TimerHandle | null = null;
  const expiry = new Promise<never>((_, reject) => {
    timer = host.after(ms, () => reject(new PStoreError("EUNAVAILABLE", `no reply within ${ms} ms`)));
  });
  return Promise.race([promise, expiry]).finally(() => timer?.cancel());
}
