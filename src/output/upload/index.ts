import type { UploadMeta } from "./meta.ts";
import { parcaRequest } from "./parca.ts";
import { pyroscopeRequest } from "./pyroscope.ts";
import { postWithRetries, type UploadOptions, type UploadResult } from "./retry.ts";
import type { UploadTarget } from "./url.ts";

/**
 * Sends a captured profile to a continuous-profiling server, as well as keeping it on
 * disk (the caller does that; an upload failure is reported, never thrown). The URL
 * convention is in url.ts, each server's protocol in pyroscope.ts and parca.ts, and
 * the retry policy in retry.ts.
 */

export { containerLabels, defaultAppName, type UploadMeta } from "./meta.ts";
export { encodeWriteRawRequest, PARCA_WRITE_RAW_PATH } from "./parca.ts";
export { pyroscopeName } from "./pyroscope.ts";
export type { UploadOptions, UploadResult } from "./retry.ts";
export { parseUploadUrl, redactUrl, type UploadTarget } from "./url.ts";

/**
 * Uploads a gzipped pprof profile. Never throws: a failure is `ok: false` with the error
 * text of the last attempt, so the caller keeps the profile on disk and reports it.
 */
export async function uploadProfile(target: UploadTarget, profileGz: Uint8Array, meta: UploadMeta, opts: UploadOptions = {}): Promise<UploadResult> {
  return postWithRetries(() => (target.kind === "parca" ? parcaRequest(target, profileGz, meta) : pyroscopeRequest(target, profileGz, meta)), opts);
}
