export * from "./allocator";
export * from "./names";
export * from "./pages";
export * from "./replica";
export * from "./sessions";
export * from "./state";
