import { appNameOf, uploadLabels, type UploadMeta } from "./meta.ts";
import { concat, lengthDelimited } from "./protobuf.ts";
import { oneLine, type AttemptResult, type PreparedRequest } from "./retry.ts";
import { redactUrl, splitCredentials, type UploadTarget } from "./url.ts";

/**
 * Parca serves ProfileStoreService over gRPC and gRPC-Web (and a grpc-gateway whose URL
 * layout differs between Parca versions), not over Connect or JSON at a stable path.
 * oomprof speaks gRPC-Web over HTTP/1.1 (`application/grpc-web+proto`, the protocol
 * Parca's own web UI uses) to `POST <url>/parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw`,
 * with a hand-encoded WriteRawRequest: one series whose labels are `__name__="memory"`,
 * `service_name`, `pid`, `comm` and the caller's labels, and one sample with the gzipped
 * pprof as raw_profile (Parca decompresses gzip itself).
 */
export const PARCA_WRITE_RAW_PATH = "/parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw";

export function parcaRequest(target: UploadTarget, profileGz: Uint8Array, meta: UploadMeta): PreparedRequest {
  const { base, headers } = splitCredentials(target.url);
  const labels: Array<[string, string]> = [["__name__", "memory"], ["service_name", appNameOf(meta)], ...uploadLabels(meta)];
  const message = encodeWriteRawRequest(labels, profileGz);
  const frame = new Uint8Array(5 + message.length);
  frame[0] = 0; // uncompressed data frame
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  const url = `${base}${PARCA_WRITE_RAW_PATH}`;
  return {
    url,
    headers: {
      ...headers,
      "content-type": "application/grpc-web+proto",
      accept: "application/grpc-web+proto",
      "x-grpc-web": "1",
    },
    body: () => frame,
    // gRPC-Web answers HTTP 200 and carries the outcome in its status.
    checkSuccess: (res, body) => grpcOutcome(url, res, body),
  };
}

/**
 * parca.profilestore.v1alpha1.WriteRawRequest in protobuf wire format:
 * series(2) { labels(1) LabelSet { labels(1) Label { name(1), value(2) } }, samples(2) RawSample { raw_profile(1) } }.
 */
export function encodeWriteRawRequest(labels: Array<[string, string]>, rawProfile: Uint8Array): Uint8Array {
  const enc = new TextEncoder();
  const labelSet = concat(
    labels.map(([name, value]) => lengthDelimited(1, concat([lengthDelimited(1, enc.encode(name)), lengthDelimited(2, enc.encode(value))]))),
  );
  const series = concat([lengthDelimited(1, labelSet), lengthDelimited(2, lengthDelimited(1, rawProfile))]);
  return lengthDelimited(2, series);
}

const GRPC_CODES: Record<number, string> = {
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  10: "ABORTED",
  11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  15: "DATA_LOSS",
  16: "UNAUTHENTICATED",
};
/** Transient by gRPC's own definitions: the counterparts of 5xx/429. */
const RETRYABLE_GRPC = new Set([4, 8, 10, 14]);

/** What a 2xx gRPC-Web response means: success only with grpc-status 0. */
function grpcOutcome(url: string, res: Response, body: Uint8Array): AttemptResult {
  const status = res.status;
  const grpc = grpcStatus(res.headers, body);
  if (!grpc) return { ok: false, retryable: false, status, error: `HTTP ${status} without a gRPC status: is ${redactUrl(url)} a Parca server?` };
  if (grpc.code === 0) return { ok: true, retryable: false, status };
  const name = GRPC_CODES[grpc.code] ?? `code ${grpc.code}`;
  return {
    ok: false,
    retryable: RETRYABLE_GRPC.has(grpc.code),
    status,
    error: `gRPC ${name}${grpc.message ? `: ${oneLine(grpc.message)}` : ""}`,
  };
}

/**
 * The gRPC status of a gRPC-Web response: from the headers (a trailers-only response),
 * else from the trailer frame (flag 0x80) in the body.
 */
function grpcStatus(headers: Headers, body: Uint8Array): { code: number; message: string } | undefined {
  const fromHeaders = headers.get("grpc-status");
  if (fromHeaders !== null && /^\d+$/.test(fromHeaders.trim())) {
    return { code: Number(fromHeaders.trim()), message: decodeGrpcMessage(headers.get("grpc-message") ?? "") };
  }
  let o = 0;
  while (o + 5 <= body.length) {
    const flag = body[o]!;
    const len = new DataView(body.buffer, body.byteOffset + o + 1, 4).getUint32(0);
    const payload = body.subarray(o + 5, Math.min(body.length, o + 5 + len));
    o += 5 + len;
    if (!(flag & 0x80)) continue;
    const fields = new Map<string, string>();
    for (const line of new TextDecoder().decode(payload).split(/\r?\n/)) {
      const i = line.indexOf(":");
      if (i > 0) fields.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    const code = fields.get("grpc-status");
    if (code !== undefined && /^\d+$/.test(code)) return { code: Number(code), message: decodeGrpcMessage(fields.get("grpc-message") ?? "") };
  }
  return undefined;
}

function decodeGrpcMessage(m: string): string {
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}
