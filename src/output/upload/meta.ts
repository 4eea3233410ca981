import type { ContainerFields } from "../../cgroup/process-placement.ts";
/** What an upload says about the profile, and the labels both servers get from it. */
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

/** The application name used when none is given (`oomprof.<comm>`). */
export function defaultAppName(comm: string): string {
  return `oomprof.${comm}`;
}

export function appNameOf(meta: UploadMeta): string {
  return meta.appName.trim() || defaultAppName(meta.comm);
}

/** The labels every upload carries: pid and comm, then the caller's (which may override). */
export function uploadLabels(meta: UploadMeta): Array<[string, string]> {
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

/**
 * Who died, as labels, so a fleet's profiles can be found by pod: Kubernetes' own label
 * names where it has one (`namespace`, `pod`), and only what is known.
 */
export function containerLabels(c: ContainerFields | null): Record<string, string> {
  if (!c) return {};
  const labels: Record<string, string> = { container_runtime: c.runtime };
  if (c.id) labels.container_id = c.id;
  if (c.pod_uid) labels.pod_uid = c.pod_uid;
  if (c.qos_class) labels.qos_class = c.qos_class;
  if (c.pod_name) labels.pod = c.pod_name;
  if (c.pod_namespace) labels.namespace = c.pod_namespace;
  return labels;
}
