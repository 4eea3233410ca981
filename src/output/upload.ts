import { UserError } from "../errors.ts";
import { SAMPLE_TYPES } from "../profile/heap-views.ts";

/**
 * Sends a captured profile to a continuous-profiling server, as well as keeping it on
 * disk (the caller does that; an upload failure is reported, never thrown).
 *
 * `--upload URL` convention (parseUploadUrl):
 *
 * | URL                                         | server                                  |
 * | ------------------------------------------- | --------------------------------------- |
 * | `http://host:4040`, `https://host/prefix`   | Pyroscope (the default)                 |
 * | `pyroscope+http://…`, `pyroscope+https://…` | Pyroscope, said explicitly              |
 * | `parca+http://host:7070`, `parca+https://…` | Parca                                   |
 *
 * A path is kept as a prefix (for a server behind a reverse proxy); a Pyroscope URL
 * may also end in `/ingest`. `user:password@` in the URL becomes HTTP Basic
 * authentication (Grafana Cloud Profiles takes the stack's user id and a token this
 * way). No query string or fragment: they would be ambiguous with what oomprof adds.
 *
 * Pyroscope (Grafana Pyroscope's "legacy HTTP API", also what OG Pyroscope and Grafana
 * Alloy's pyroscope.receive_http accept): `POST <url>/ingest?name=…&from=…&until=…
 * &format=pprof&spyName=gospy` with a multipart/form-data body whose file field
 * `profile` holds the gzipped pprof, and a file field `sample_type_config` (JSON)
 * describing oomprof's sample types. Grafana Pyroscope's server API reference
 * documents this multipart form for pprof (the form Pyroscope's own Go client sends);
 * the server also takes the pprof as the raw body, which cannot carry the sample type
 * configuration, so the multipart form is used. `name` is the application name
 * followed by labels, `app{key=value,key=value}`: values are not quoted, and `,` and
 * `}` end a value, so they are replaced in values.
 *
 * Parca: Parca serves ProfileStoreService over gRPC and gRPC-Web (and a grpc-gateway
 * whose URL layout differs between Parca versions), not over Connect or JSON at a stable
 * path. oomprof speaks gRPC-Web over HTTP/1.1 (`application/grpc-web+proto`, the protocol
 * Parca's own web UI uses) to `POST <url>/parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw`,
 * with a hand-encoded WriteRawRequest: one series whose labels are `__name__="memory"`,
 * `service_name`, `pid`, `comm` and the caller's labels, and one sample with the gzipped
 * pprof as raw_profile (Parca decompresses gzip itself).
 */
export interface UploadTarget {
  url: string;
  kind: "pyroscope" | "parca";
}

export interface UploadMeta {
  /** Application name; empty means `oomprof.<comm>`. */
  appName: string;
  pid: number;
  comm: string;
  /** Unix seconds: the profile covers [startSec, endSec]. */
  startSec: number;
  endSec: number;
  /** Extra labels, e.g. `{ reason: "oom_kill" }`. */
  labels?: Record<string, string>;
}

export interface UploadOptions {
  /** Further attempts after the first one, on network errors, timeouts, 5xx and 429 (default 3). */
  retries?: number;
  /** Delay before the first retry, doubled for each further one (default 500 ms). */
  backoffMs?: number;
  /** Bound on each attempt, response included (default 10 s). */
  timeoutMs?: number;
}

export interface UploadResult {
  ok: boolean;
  attempts: number;
  /** HTTP status of the last attempt that got a response. */
  status?: number;
  error?: string;
}

const SCHEMES: Record<string, { kind: UploadTarget["kind"]; protocol: "http:" | "https:" }> = {
  "http:": { kind: "pyroscope", protocol: "http:" },
  "https:": { kind: "pyroscope", protocol: "https:" },
  "pyroscope+http:": { kind: "pyroscope", protocol: "http:" },
  "pyroscope+https:": { kind: "pyroscope", protocol: "https:" },
  "parca+http:": { kind: "parca", protocol: "http:" },
  "parca+https:": { kind: "parca", protocol: "https:" },
};

/** Parses `--upload URL` (convention above). Throws a one-line UserError for a bad one. */
export function parseUploadUrl(raw: string): UploadTarget {
  const text = raw.trim();
  const bad = (why: string) =>
    new UserError(`--upload ${JSON.stringify(redactUrl(text))}: ${why}`, 2);
  if (!text) throw new UserError("--upload needs a URL, e.g. http://pyroscope:4040 or parca+http://parca:7070", 2);
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (!m) throw bad("not a URL: expected http://, https://, pyroscope+http(s):// or parca+http(s)://");
  const scheme = SCHEMES[`${m[1]!.toLowerCase()}:`];
  if (!scheme) throw bad(`unsupported scheme ${m[1]}://: use http://, https://, pyroscope+http(s):// or parca+http(s)://`);
  let url: URL;
  try {
    url = new URL(`${scheme.protocol}//${text.slice(m[0].length)}`);
  } catch {
    throw bad("not a valid URL");
  }
  if (!url.hostname) throw bad("no host");
  if (url.search || text.includes("?")) throw bad("a query string is not allowed (oomprof adds its own)");
  if (url.hash || text.includes("#")) throw bad("a fragment (#...) is not allowed");
  let path = url.pathname.replace(/\/+$/, "");
  if (scheme.kind === "pyroscope") path = path.replace(/\/ingest$/, "");
  const auth = url.username || url.password ? `${url.username}${url.password ? `:${url.password}` : ""}@` : "";
  return { url: `${url.protocol}//${auth}${url.host}${path}`, kind: scheme.kind };
}

/** The URL with any password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:?#]*):[^/@?#]*@/i, "$1:***@");
}

/** The application name used when none is given (`oomprof.<comm>`). */
export function defaultAppName(comm: string): string {
  return `oomprof.${comm}`;
}

/**
 * Uploads a gzipped pprof profile. Never throws: a failure is `ok: false` with the error
 * text of the last attempt, so the caller keeps the profile on disk and reports it.
 */
export async function uploadProfile(
  target: UploadTarget,
  profileGz: Uint8Array,
  meta: UploadMeta,
  opts: UploadOptions = {},
): Promise<UploadResult> {
  const retries = Math.max(0, Math.floor(opts.retries ?? 3));
  const backoffMs = Math.max(0, opts.backoffMs ?? 500);
  const timeoutMs = Math.max(1, opts.timeoutMs ?? 10_000);
  let attempts = 0;
  let last: AttemptResult = { ok: false, retryable: false, error: "not attempted" };
  try {
    const request = target.kind === "parca" ? parcaRequest(target, profileGz, meta) : pyroscopeRequest(target, profileGz, meta);
    for (;;) {
      attempts++;
      last = await attempt(target.kind, request, timeoutMs);
      if (last.ok || !last.retryable || attempts > retries) break;
      const backoff = backoffMs * 2 ** (attempts - 1);
      await Bun.sleep(Math.max(backoff, Math.min(last.retryAfterMs ?? 0, 30_000)));
    }
  } catch (e) {
    last = { ok: false, retryable: false, error: `upload failed: ${errorText(e)}` };
    attempts = Math.max(attempts, 1);
  }
  const result: UploadResult = { ok: last.ok, attempts };
  if (last.status !== undefined) result.status = last.status;
  if (!last.ok) result.error = last.error ?? "upload failed";
  return result;
}

interface PreparedRequest {
  url: string;
  headers: Record<string, string>;
  /** A fresh body for each attempt. */
  body: () => FormData | Uint8Array<ArrayBuffer>;
}

interface AttemptResult {
  ok: boolean;
  retryable: boolean;
  status?: number;
  error?: string;
  retryAfterMs?: number;
}

async function attempt(kind: UploadTarget["kind"], req: PreparedRequest, timeoutMs: number): Promise<AttemptResult> {
  let res: Response;
  let body: Uint8Array;
  try {
    res = await fetch(req.url, {
      method: "POST",
      headers: req.headers,
      body: req.body(),
      signal: AbortSignal.timeout(timeoutMs),
      // A redirected POST is a misconfigured URL, not something to follow silently.
      redirect: "manual",
    });
    body = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    const name = (e as { name?: string } | null)?.name;
    if (name === "TimeoutError" || name === "AbortError") return { ok: false, retryable: true, error: `no answer within ${timeoutMs} ms` };
    return { ok: false, retryable: true, error: errorText(e) };
  }
  const status = res.status;
  if (status === 429 || status >= 500) {
    const retryAfterMs = retryAfter(res.headers.get("retry-after"));
    return { ok: false, retryable: true, status, error: httpError(res, body), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  if (status >= 300 && status < 400) {
    const location = res.headers.get("location");
    return { ok: false, retryable: false, status, error: `HTTP ${status} redirect${location ? ` to ${redactUrl(location)}` : ""}: give that URL to --upload` };
  }
  if (status < 200 || status >= 300) return { ok: false, retryable: false, status, error: httpError(res, body) };
  if (kind === "pyroscope") return { ok: true, retryable: false, status };

  const grpc = grpcStatus(res.headers, body);
  if (!grpc) return { ok: false, retryable: false, status, error: `HTTP ${status} without a gRPC status: is ${redactUrl(req.url)} a Parca server?` };
  if (grpc.code === 0) return { ok: true, retryable: false, status };
  const name = GRPC_CODES[grpc.code] ?? `code ${grpc.code}`;
  return {
    ok: false,
    retryable: RETRYABLE_GRPC.has(grpc.code),
    status,
    error: `gRPC ${name}${grpc.message ? `: ${oneLine(grpc.message)}` : ""}`,
  };
}

// ---------------------------------------------------------------- labels

/** The labels every upload carries: pid and comm, then the caller's (which may override). */
function uploadLabels(meta: UploadMeta): Array<[string, string]> {
  const labels = new Map<string, string>([
    ["pid", String(meta.pid)],
    ["comm", meta.comm],
  ]);
  for (const [k, v] of Object.entries(meta.labels ?? {})) {
    const key = labelName(k);
    if (key) labels.set(key, v);
  }
  return [...labels];
}

/** A Prometheus-style label name ([A-Za-z_][A-Za-z0-9_]*), which both servers accept; "" for reserved names. */
function labelName(k: string): string {
  let key = k.replace(/[^A-Za-z0-9_]/g, "_");
  if (/^[0-9]/.test(key)) key = `_${key}`;
  return key.startsWith("__") || key === "service_name" ? "" : key;
}

function appNameOf(meta: UploadMeta): string {
  return meta.appName.trim() || defaultAppName(meta.comm);
}

// ---------------------------------------------------------------- Pyroscope

/** Pyroscope's units for oomprof's sample types; "average" for views of memory held at one instant. */
function sampleTypeConfig(): string {
  const config: Record<string, { units: string; aggregation: string; sampled: boolean }> = {};
  for (const [type, unit] of SAMPLE_TYPES) {
    config[type] = {
      units: unit === "bytes" ? "bytes" : "objects",
      aggregation: type.startsWith("alloc_") ? "sum" : "average",
      sampled: false,
    };
  }
  return JSON.stringify(config);
}

/** The `name` query parameter: `app{key=value,...}`, with what Pyroscope's key parser cannot take replaced. */
export function pyroscopeName(meta: UploadMeta): string {
  const app = appNameOf(meta).replace(/[^A-Za-z0-9_.-]/g, "_");
  const labels = uploadLabels(meta).map(([k, v]) => `${k}=${v.replace(/[,{}=]/g, "_").trim() || "_"}`);
  return `${app}{${labels.join(",")}}`;
}

function pyroscopeRequest(target: UploadTarget, profileGz: Uint8Array, meta: UploadMeta): PreparedRequest {
  const { base, headers } = splitCredentials(target.url);
  const from = Math.floor(meta.startSec);
  const until = Math.max(from, Math.ceil(meta.endSec));
  const query = new URLSearchParams({
    name: pyroscopeName(meta),
    from: String(from),
    until: String(until),
    format: "pprof",
    // What Pyroscope's own Go client sends with Go pprof profiles.
    spyName: "gospy",
  });
  const stConfig = sampleTypeConfig();
  return {
    url: `${base}/ingest?${query}`,
    headers,
    body: () => {
      const form = new FormData();
      form.append("profile", new Blob([profileGz], { type: "application/octet-stream" }), "profile.pprof");
      form.append("sample_type_config", new Blob([stConfig], { type: "application/json" }), "sample_type_config.json");
      return form;
    },
  };
}

// ---------------------------------------------------------------- Parca (gRPC-Web)

export const PARCA_WRITE_RAW_PATH = "/parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw";

function parcaRequest(target: UploadTarget, profileGz: Uint8Array, meta: UploadMeta): PreparedRequest {
  const { base, headers } = splitCredentials(target.url);
  const labels: Array<[string, string]> = [
    ["__name__", "memory"],
    ["service_name", appNameOf(meta)],
    ...uploadLabels(meta),
  ];
  const message = encodeWriteRawRequest(labels, profileGz);
  const frame = new Uint8Array(5 + message.length);
  frame[0] = 0; // uncompressed data frame
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  return {
    url: `${base}${PARCA_WRITE_RAW_PATH}`,
    headers: {
      ...headers,
      "content-type": "application/grpc-web+proto",
      accept: "application/grpc-web+proto",
      "x-grpc-web": "1",
    },
    body: () => frame,
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

function lengthDelimited(field: number, payload: Uint8Array): Uint8Array {
  return concat([varint((field << 3) | 2), varint(payload.length), payload]);
}

function varint(n: number): Uint8Array {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
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

// ---------------------------------------------------------------- helpers

/** Moves `user:password@` out of the URL into an Authorization header (fetch refuses credentials in URLs). */
function splitCredentials(raw: string): { base: string; headers: Record<string, string> } {
  const url = new URL(raw);
  const headers: Record<string, string> = {};
  if (url.username || url.password) {
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
    url.username = "";
    url.password = "";
  }
  return { base: url.href.replace(/\/+$/, ""), headers };
}

function httpError(res: Response, body: Uint8Array): string {
  const text = oneLine(new TextDecoder().decode(body.subarray(0, 400)));
  return `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${text ? `: ${text.slice(0, 200)}` : ""}`;
}

function retryAfter(v: string | null): number | undefined {
  if (!v) return undefined;
  const s = Number(v.trim());
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : undefined;
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const msg = oneLine(e.message);
    return typeof code === "string" && code && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return oneLine(String(e));
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}
