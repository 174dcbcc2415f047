/** pstore's public TypeScript API. */
export * from "./client";
