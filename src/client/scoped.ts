/** withRead and withWrite: a use that ends whatever the function given does. */
import type { AccessOptions, Store } from "./types";

type Use<T> = (view: Uint8Array) => T | Promise<T>;

export async function withReadUse<T>(store: Pick<Store, "accessRead" | "releaseRead">, name: string, fn: Use<T>, options?: AccessOptions): Promise<T> {
  const view = await store.accessRead(name, options);
  try {
    return await fn(view);
  } finally {
    await store.releaseRead(view);
  }
}

/** A write that throws is dropped by `abandon`: nothing is shipped. */
export async function withWriteUse<T>(
  store: Pick<Store, "accessReadWrite" | "releaseReadWrite">,
  abandon: (view: Uint8Array) => Promise<void>,
  name: string,
  fn: Use<T>,
  options?: AccessOptions,
): Promise<T> {
  const view = await store.accessReadWrite(name, options);
  let result: T;
  try {
    result = await fn(view);
  } catch (error) {
    await abandon(view).catch(() => {});
    throw error;
  }
  await store.releaseReadWrite(view);
  return result;
}
