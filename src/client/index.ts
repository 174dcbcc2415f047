export { PStoreError } from "../errors";
export type { ErrorCode } from "../errors";
export * from "./seed";
export { connect, resolveServers } from "./store";
export type * from "./types";
