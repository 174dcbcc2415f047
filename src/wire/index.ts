export * from "./codec";
export * from "./frame";
export * from "./messages";
export * from "./peer";
