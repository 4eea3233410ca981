import { UserError } from "../../errors.ts";

/**
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
 */
export interface UploadTarget {
  url: string;
  kind: "pyroscope" | "parca";
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
  const bad = (why: string) => new UserError(`--upload ${JSON.stringify(redactUrl(text))}: ${why}`, 2);
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

/** Moves `user:password@` out of the URL into an Authorization header (fetch refuses credentials in URLs). */
export function splitCredentials(raw: string): { base: string; headers: Record<string, string> } {
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
