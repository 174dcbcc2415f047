/** A data dir that cannot be trusted: the message names the file and the offset. */
export class RecoveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecoveryError";
  }
}
