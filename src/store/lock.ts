/** One server per data dir: a LOCK file holding the owner's pid. */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { RecoveryError } from "./errors";

export function lockDataDir(dir: string): () => void {
  const file = join(dir, "LOCK");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => unlinkSync(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(readFileSync(file, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) {
        throw new RecoveryError(`${dir} is in use by another pstore server (pid ${owner}); one server per data dir`);
      }
      unlinkSync(file); // left by a server that died: take it over
    }
  }
  throw new RecoveryError(`${dir}: cannot take the LOCK file`);
}

export function dataDirOwner(dir: string): number | null {
  try {
    const owner = Number(readFileSync(join(dir, "LOCK"), "utf8").trim());
    return Number.isInteger(owner) && owner > 0 && isAlive(owner) ? owner : null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  // A killed server not yet reaped by its parent is a zombie: it holds nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}
