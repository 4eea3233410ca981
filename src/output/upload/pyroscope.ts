import { SAMPLE_TYPES } from "../../profile/heap-views.ts";
import { appNameOf, uploadLabels, type UploadMeta } from "./meta.ts";
import type { PreparedRequest } from "./retry.ts";
import { splitCredentials, type UploadTarget } from "./url.ts";

/**
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
 */
export function pyroscopeRequest(target: UploadTarget, profileGz: Uint8Array, meta: UploadMeta): PreparedRequest {
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

/** The `name` query parameter: `app{key=value,...}`, with what Pyroscope's key parser cannot take replaced. */
export function pyroscopeName(meta: UploadMeta): string {
  const app = appNameOf(meta).replace(/[^A-Za-z0-9_.-]/g, "_");
  const labels = uploadLabels(meta).map(([k, v]) => `${k}=${v.replace(/[,{}=]/g, "_").trim() || "_"}`);
  return `${app}{${labels.join(",")}}`;
}

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
