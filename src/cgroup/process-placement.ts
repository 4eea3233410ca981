import { readFileSync } from "node:fs";
import { z } from "zod";
import { containerFromCgroupPath, type ContainerIdentity } from "./container-identity.ts";
import { processCgroup } from "./memory-cgroup.ts";

/**
 * Where a process runs, as its own /proc files say while it lives: the fallback for what
 * the OOM probe reads at the kill (its memory cgroup and namespaced pid), and the only
 * source of a pod's name and namespace, which no cgroup path carries.
 */
export interface ProcessPlacement {
  cgroup?: string;
  /** Its pid in its innermost pid namespace (the last NSpid field). */
  nsPid?: number;
  /** /etc/hostname inside its root: a Kubernetes pod's name (unless the pod sets spec.hostname). */
  hostname?: string;
  /** The service-account namespace file inside its root, where the pod mounts one. */
  podNamespace?: string;
}

/** A DNS label or subdomain as Kubernetes allows for names and hostnames; anything else is not trusted as one. */
const DnsName = z
  .string()
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
const NsPidLine = z.string().regex(/^NSpid:(\s+\d+)+$/);

function readSmall(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").slice(0, 512);
  } catch {
    return undefined;
  }
}

export function readProcessPlacement(pid: number): ProcessPlacement {
  const p: ProcessPlacement = {};
  const cgroup = processCgroup(pid);
  if (cgroup !== undefined) p.cgroup = cgroup;
  const nspid = readSmall(`/proc/${pid}/status`)
    ?.split("\n")
    .find((l) => l.startsWith("NSpid:"));
  if (nspid && NsPidLine.safeParse(nspid).success) p.nsPid = Number(nspid.trim().split(/\s+/).at(-1));
  // Through /proc/PID/root: the container's own files, in its own mount namespace.
  const hostname = DnsName.safeParse(readSmall(`/proc/${pid}/root/etc/hostname`)?.trim());
  if (hostname.success) p.hostname = hostname.data;
  const ns = DnsName.safeParse(readSmall(`/proc/${pid}/root/var/run/secrets/kubernetes.io/serviceaccount/namespace`)?.trim());
  if (ns.success) p.podNamespace = ns.data;
  return p;
}

/** The event's `container`: the identity a cgroup path gives, with a pod's name and namespace where its files showed them. */
export interface ContainerFields extends ContainerIdentity {
  pod_name: string | null;
  pod_namespace: string | null;
}

export function containerFields(cgroup: string | null, placement: ProcessPlacement): ContainerFields | null {
  const identity = cgroup === null ? null : containerFromCgroupPath(cgroup);
  if (!identity) return null;
  // A hostname names the pod only in Kubernetes; elsewhere it is the container's own.
  const inPod = identity.pod_uid !== null;
  return { ...identity, pod_name: inPod ? (placement.hostname ?? null) : null, pod_namespace: inPod ? (placement.podNamespace ?? null) : null };
}

/** The event fields for where a process ran: `cgroup`, `ns_pid` and `container`. */
export function placementFields(p: ProcessPlacement): { cgroup: string | null; ns_pid: number | null; container: ContainerFields | null } {
  const cgroup = p.cgroup ?? null;
  return { cgroup, ns_pid: p.nsPid ?? null, container: containerFields(cgroup, p) };
}
