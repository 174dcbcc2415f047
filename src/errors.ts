/** Every error a user of pstore can see, with a code they can branch on. */
export const ERROR_CODES = [
  "ENOENT", // no datum of that name
  "EEXIST", // a datum of that name exists already
  "ENOSPC", // no free run of pages is large enough
  "EINVAL", // a name, size, flag or frame is malformed
  "EBUSY", // the datum is held or waited on (delete)
  "ETIMEDOUT", // an access waited longer than its timeout
  "ECANCELED", // an access was aborted by its AbortSignal
  "EDEADLK", // the session already holds or waits for that datum
  "ESESSION", // the session expired or is unknown: its holds are gone
  "ESTALE", // the hold id is not (or no longer) a hold of this session
  "EAUTH", // wrong or missing secret
  "EUNAVAILABLE", // no server could be reached
  "EPROTO", // the peer broke the protocol
  "ELIMIT", // a configured limit was hit
  "ECLOSED", // the store was closed
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: string): value is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(value);
}

export class PStoreError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = "PStoreError";
    this.code = code;
  }
}
