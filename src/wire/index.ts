export * from "./codec";
export * from "./frame";
export * from "./messages";
