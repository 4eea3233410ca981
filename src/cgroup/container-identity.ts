/**
 * Which container and Kubernetes pod a cgroup path belongs to, read from the path alone: container
 * runtimes and the kubelet name their cgroups after the container id and pod UID. The identity is
 * looked for in every segment, not only the leaf, so that a container's own sub-cgroups
 * (`.../libpod-<id>.scope/container`, `.../docker-<id>.scope/init.scope`), a cgroup namespace's
 * `/../..` prefix and a node inside a container (kind, minikube, k3d) all resolve.
 */

export type ContainerRuntime = "containerd" | "cri-o" | "docker" | "podman" | "unknown";
export type QosClass = "guaranteed" | "burstable" | "besteffort";

/** Who a cgroup path belongs to. Names follow the JSON event's snake_case. */
export interface ContainerIdentity {
  runtime: ContainerRuntime;
  /** The container id (64 lowercase hex normally), null when only the pod is known (e.g. the pod-level cgroup, or an unknown leaf). */
  id: string | null;
  /** Kubernetes pod UID in its canonical dashed form (8-4-4-4-12), null outside Kubernetes. */
  pod_uid: string | null;
  /** Kubernetes QoS class (guaranteed when the pod cgroup sits directly under kubepods), null outside Kubernetes. */
  qos_class: QosClass | null;
}

/**
 * Segments that name one container by a runtime's prefix (group 1 is the id). With the systemd cgroup
 * driver the runtime asks systemd for a `<prefix>-<id>.scope` unit; with cgroupfs some runtimes still
 * prefix the leaf, without `.scope`.
 */
const PREFIXED: { re: RegExp; runtime: ContainerRuntime }[] = [
  // containerd's CRI plugin (Kubernetes, k3s, kind) with the systemd driver, or its prefix on a cgroupfs leaf.
  { re: /^cri-containerd-([0-9a-f]{64})(?:\.scope)?$/, runtime: "containerd" },
  // nerdctl (containerd without Kubernetes) with the systemd driver.
  { re: /^nerdctl-([0-9a-f]{64})(?:\.scope)?$/, runtime: "containerd" },
  // CRI-O, either driver; its conmon monitor gets `crio-conmon-<id>` beside the container.
  { re: /^crio-(?:conmon-)?([0-9a-f]{64})(?:\.scope)?$/, runtime: "cri-o" },
  // Docker with the systemd driver (plain docker, rootless docker, or Kubernetes through dockershim).
  { re: /^docker-([0-9a-f]{64})(?:\.scope)?$/, runtime: "docker" },
  // Podman: `libpod-<id>.scope` (systemd, root or rootless) or `libpod_parent/libpod-<id>` (cgroupfs); conmon gets `libpod-conmon-<id>`.
  { re: /^libpod-(?:conmon-)?([0-9a-f]{64})(?:\.scope)?$/, runtime: "podman" },
];

const BARE_ID = /^[0-9a-f]{64}$/;

/** A bare 64-hex leaf is too ambiguous alone; these parents say whose it is (besides a Kubernetes pod, where the runtime stays unknown). */
const BARE_ID_PARENTS = new Map<string, ContainerRuntime>([
  ["docker", "docker"], // Docker with the cgroupfs driver: `/docker/<id>` (also docker-in-docker and kind/minikube nodes on cgroup v1).
  ["default", "containerd"], // containerd's cgroupfs cgroups are `/<namespace>/<id>`; ctr and nerdctl use namespace "default".
]);

// A pod UID: dashed, or with underscores in a systemd slice name (systemd reserves "-" for slice nesting),
// or 32 hex for a static pod (the kubelet uses its config hash as the UID).
const UID = "([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})";

// Kubelet, systemd driver: `kubepods-pod<uid>.slice` (guaranteed) or `kubepods-<qos>-pod<uid>.slice`.
// A custom cgroup root prefixes the slice names (kind's `kubelet.slice/kubelet-kubepods-...`).
const POD_SLICE = new RegExp(`^(?:.*-)?kubepods(?:-(burstable|besteffort))?-pod${UID}\\.slice$`);

// Kubelet, cgroupfs driver: `kubepods/pod<uid>` (guaranteed) or `kubepods/<qos>/pod<uid>`.
const POD_DIR = new RegExp(`^pod${UID}$`);

// A systemd-style cgroup path (`<slice>:<prefix>:<id>`) that a runtime set up with the cgroupfs driver
// took literally, e.g. `/system.slice/containerd.service/kubepods-burstable-pod<uid>.slice:cri-containerd:<id>`
// when the kubelet uses systemd and containerd does not: read it as the `<slice>/<prefix>-<id>.scope` it meant.
const SYSTEMD_TRIPLE = /^(.+\.slice):([^:]+):([^:]+)$/;

function segmentsOf(path: string): string[] {
  return path.split("/").flatMap((s) => {
    const m = SYSTEMD_TRIPLE.exec(s);
    return m ? [m[1]!, `${m[2]}-${m[3]}.scope`] : [s];
  });
}

function podAt(segments: string[], i: number): { uid: string; qos: QosClass } | null {
  const seg = segments[i]!;
  const slice = POD_SLICE.exec(seg);
  if (slice) return { uid: slice[2]!.replaceAll("_", "-"), qos: (slice[1] as QosClass | undefined) ?? "guaranteed" };
  const dir = POD_DIR.exec(seg);
  if (!dir) return null;
  const uid = dir[1]!.replaceAll("_", "-");
  const parent = segments[i - 1];
  if (parent === "kubepods") return { uid, qos: "guaranteed" };
  if ((parent === "burstable" || parent === "besteffort") && segments[i - 2] === "kubepods") return { uid, qos: parent };
  return null;
}

function containerAt(segments: string[], i: number, underPod: boolean): { id: string; runtime: ContainerRuntime } | null {
  const seg = segments[i]!;
  for (const { re, runtime } of PREFIXED) {
    const m = re.exec(seg);
    if (m) return { id: m[1]!, runtime };
  }
  if (!BARE_ID.test(seg)) return null;
  if (underPod) return { id: seg, runtime: "unknown" }; // cgroupfs Kubernetes: any CRI runtime
  const runtime = BARE_ID_PARENTS.get(segments[i - 1] ?? "");
  return runtime ? { id: seg, runtime } : null;
}

/**
 * The container and pod a cgroup path (as /proc/PID/cgroup or the kernel shows it, starting with "/") names,
 * or null when it names none (host processes, system services, user sessions, "/"). The innermost container
 * wins (docker-in-docker, a Kubernetes node in a container); a pod deeper than every container names only a pod.
 */
export function containerFromCgroupPath(path: string): ContainerIdentity | null {
  if (typeof path !== "string") return null;
  const segments = segmentsOf(path.trim().toLowerCase());
  let pod: { uid: string; qos: QosClass; at: number } | null = null;
  let container: { id: string; runtime: ContainerRuntime; at: number } | null = null;
  for (let i = 0; i < segments.length; i++) {
    const p = podAt(segments, i);
    if (p) pod = { ...p, at: i };
    const c = containerAt(segments, i, pod !== null && pod.at === i - 1);
    if (c) container = { ...c, at: i };
  }
  if (container && (!pod || pod.at < container.at)) {
    return { runtime: container.runtime, id: container.id, pod_uid: pod?.uid ?? null, qos_class: pod?.qos ?? null };
  }
  return pod ? { runtime: "unknown", id: null, pod_uid: pod.uid, qos_class: pod.qos } : null;
}
