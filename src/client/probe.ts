/**
 * Finding the chain (cluster.ts): every known server is dialled at once, and
 * each welcome says which chain that server serves.
 */
import { PROBE_GRACE_MS } from "../constants";
import { PStoreError } from "../errors";
import { type ClientHost, ConnectionRefused, type ServerConnection, type TimerHandle } from "./host";

/**
 * Dials every address at once. Once one has answered, the others get
 * PROBE_GRACE_MS more: a paused or unreachable server must not hold up a
 * failover for its whole connect timeout.
 */
export function probeAll(
  addresses: string[],
  dial: (address: string) => Promise<ServerConnection>,
  host: ClientHost,
  problems: Set<string>,
  refused: Set<string>,
): Promise<ServerConnection[]> {
  return new Promise((resolve, reject) => {
    const opened: ServerConnection[] = [];
    let outstanding = addresses.length;
    let done = false;
    let grace: TimerHandle | null = null;
    const finish = (error?: Error) => {
      if (done) return;
      done = true;
      grace?.cancel();
      if (error) {
        for (const connection of opened) connection.close();
        reject(error);
      } else resolve([...opened]);
    };
    const settled = () => {
      if (--outstanding === 0) finish();
    };
    if (outstanding === 0) return finish();
    for (const address of addresses) {
      dial(address).then(
        (connection) => {
          if (done) return connection.close(); // too late: the choice is made
          opened.push(connection);
          grace ??= host.after(PROBE_GRACE_MS, () => finish());
          settled();
        },
        (error) => {
          // A refusal that retrying cannot fix (authentication, protocol) ends the search.
          if (error instanceof PStoreError && error.code !== "EUNAVAILABLE") return finish(error);
          if (error instanceof ConnectionRefused) refused.add(address);
          problems.add(withoutCode((error as Error).message));
          settled();
        },
      );
    }
  });
}

/** "EUNAVAILABLE: cannot connect…" → "cannot connect…": the summary carries the code once. */
export function withoutCode(message: string): string {
  return message.replace(/^E[A-Z]+: /, "");
}
