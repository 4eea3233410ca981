import { redactUrl } from "./url.ts";

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

/** One server's POST, built once and sent as many times as retries allow. */
export interface PreparedRequest {
  url: string;
  headers: Record<string, string>;
  /** A fresh body for each attempt. */
  body: () => FormData | Uint8Array<ArrayBuffer>;
  /**
   * Judges a 2xx response, for protocols that report failures inside one (gRPC-Web);
   * without it, 2xx is success.
   */
  checkSuccess?: (res: Response, body: Uint8Array) => AttemptResult;
}

export interface AttemptResult {
  ok: boolean;
  retryable: boolean;
  status?: number;
  error?: string;
  retryAfterMs?: number;
}

/**
 * POSTs the request built by `prepare`, retrying transient failures with exponential
 * backoff (longer if the server asks, up to 30 s). Never throws: a failure to build the
 * request too is `ok: false`.
 */
export async function postWithRetries(prepare: () => PreparedRequest, opts: UploadOptions): Promise<UploadResult> {
  const retries = Math.max(0, Math.floor(opts.retries ?? 3));
  const backoffMs = Math.max(0, opts.backoffMs ?? 500);
  const timeoutMs = Math.max(1, opts.timeoutMs ?? 10_000);
  let attempts = 0;
  let last: AttemptResult = { ok: false, retryable: false, error: "not attempted" };
  try {
    const request = prepare();
    for (;;) {
      attempts++;
      last = await attempt(request, timeoutMs);
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

async function attempt(req: PreparedRequest, timeoutMs: number): Promise<AttemptResult> {
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
  return req.checkSuccess ? req.checkSuccess(res, body) : { ok: true, retryable: false, status };
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

/** Server text folded onto one line, for one-line reports. */
export function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}
