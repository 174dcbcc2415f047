export * from "./codec";
export * from "./frame";
export * from "./messages";
export * from "./ops";
export * from "./pages";
export * from "./peer";
export * from "./replies";
