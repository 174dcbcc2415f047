/**
 * The specification's own names (shared/seeds/000_…), on one default store,
 * so its C example ports line for line:
 *   await init_persistant(); await p_create(4, "compteur");
 *   const cpt = await p_access_readwrite("compteur"); ...; await p_release_readwrite(cpt);
 */
import { PStoreError } from "../errors";
import { connect } from "./store";
import type { AccessOptions, ConnectOptions, Store } from "./types";

let defaultStore: Store | null = null;

function store(): Store {
  if (!defaultStore) throw new PStoreError("EINVAL", "call init_persistant() first");
  return defaultStore;
}

/** Connects the default store (same options as connect()). */
export async function init_persistant(options?: ConnectOptions): Promise<Store> {
  if (defaultStore) await defaultStore.close();
  defaultStore = await connect(options);
  return defaultStore;
}

export function p_create(size: number, name: string): Promise<void> {
  return store().create(name, size);
}

export function p_access_read(name: string, options?: AccessOptions): Promise<Uint8Array> {
  return store().accessRead(name, options);
}

export function p_access_readwrite(name: string, options?: AccessOptions): Promise<Uint8Array> {
  return store().accessReadWrite(name, options);
}

export function p_release_read(view: ArrayBufferView): Promise<void> {
  return store().releaseRead(view);
}

export function p_release_readwrite(view: ArrayBufferView): Promise<void> {
  return store().releaseReadWrite(view);
}

/** Closes the default store (not in the specification; releases everything). */
export async function close_persistant(): Promise<void> {
  const current = defaultStore;
  defaultStore = null;
  await current?.close();
}
