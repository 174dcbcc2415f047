/**
 * A program's uncaught PStoreError prints one line — `PStoreError: EEXIST: a
 * datum named "compteur" exists already` — and exits 1, instead of a code
 * frame and a stack trace: the message already says what happened and what
 * to do. Anything else prints as Bun prints it. Installed by connect() only
 * where it cannot get in the way: not under `bun test`, and not for an event
 * the program handles itself (then its own handler decides).
 */
import { PStoreError } from "../errors";

let _installed = false;

export function reportUncaughtPStoreErrors(): void {
  if (_installed || process.env.NODE_ENV === "test") return;
  _installed = true;
  for (const event of ["uncaughtException", "unhandledRejection"] as const) {
    if (process.listenerCount(event) > 0) continue;
    const onError = (error: unknown) => {
      // The program added a handler of its own since: it decides.
      if (process.listenerCount(event) > 1) return;
      if (error instanceof PStoreError) process.stderr.write(`${error.name}: ${error.message}\n`);
      else console.error(error);
      process.exit(1);
    };
    process.on(event, onError);
  }
}
