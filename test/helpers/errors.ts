import { PStoreError } from "../../src/index";

/** "ok", or the PStoreError code the promise rejected with (anything else is rethrown). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    if (error instanceof PStoreError) return error.code;
    throw error;
  }
}
