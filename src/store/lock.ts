/**
 * One server per data dir: an exclusive flock on its LOCK file, held while the
 * server runs. The kernel drops it when the server dies, so neither a stale
 * LOCK nor a reused pid (a LOCK naming pid 1) is ever mistaken for a live
 * server. The file also holds the owner's pid, for messages only.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { lockFd } from "../memory";
import { RecoveryError } from "./errors";
import { isNoSpace } from "./files";

export function lockDataDir(dir: string): () => void {
  const file = join(dir, "LOCK");
  for (let attempt = 0; attempt < 3; attempt++) {
    const fd = openSync(file, "a+");
    if (!lockFd(fd)) {
      closeSync(fd);
      const owner = ownerPid(file);
      throw new RecoveryError(`${dir} is in use by another pstore server${owner ? ` (pid ${owner})` : ""}; one server per data dir`);
    }
    // The previous owner may have unlinked the file between our open and our lock: lock the file the name points to.
    if (!sameFile(fd, file)) {
      closeSync(fd);
      continue;
    }
    try {
      ftruncateSync(fd, 0);
      writeSync(fd, `${process.pid}\n`, 0);
    } catch (error) {
      // The pid is for messages only: the lock holds without it (a full disk must not stop the server here).
      if (!isNoSpace(error)) throw error;
    }
    return () => {
      unlinkSync(file);
      closeSync(fd);
    };
  }
  throw new RecoveryError(`${dir}: cannot take the LOCK file (it keeps being replaced)`);
}

/** The pid of the server running in `dir`, or null when none holds its lock. */
export function dataDirOwner(dir: string): number | null {
  const file = join(dir, "LOCK");
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return null;
  }
  try {
    return lockFd(fd) ? null : (ownerPid(file) ?? 0);
  } finally {
    closeSync(fd); // also drops the lock if we just took it
  }
}

function ownerPid(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function sameFile(fd: number, file: string): boolean {
  try {
    return fstatSync(fd).ino === statSync(file).ino;
  } catch {
    return false;
  }
}
