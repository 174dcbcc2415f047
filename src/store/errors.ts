import { WireError } from "../wire";

/** A data dir that cannot be trusted: the message names the file and the offset. */
export class RecoveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecoveryError";
  }
}

/** The log or a checkpoint does not check out (not a lock or a flag problem): --rejoin can set it aside. */
export class CorruptDataError extends RecoveryError {
  constructor(message: string) {
    super(message);
    this.name = "CorruptDataError";
  }
}

/** A file's header, read with `read`: a number out of range in it is a corrupt file, said so. */
export function readHeader<T>(file: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (!(error instanceof WireError)) throw error;
    throw new RecoveryError(`${file}: bad header (${error.message})`);
  }
}
