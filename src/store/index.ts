export * from "./checkpoint";
export * from "./config";
export * from "./durability";
export * from "./errors";
export * from "./lock";
export * from "./recovery";
export * from "./wal";
export { isNoSpace } from "./files";
