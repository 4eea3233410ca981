import { describe, expect, test } from "bun:test";
import { containerFields, placementFields } from "../../src/cgroup/process-placement.ts";
import { killEvent } from "../helpers/kill-event.ts";
import { describeContainer } from "../../src/output/format.ts";
import { renderKillSummary } from "../../src/output/summary.ts";
import { containerLabels, uploadLabels } from "../../src/output/upload/meta.ts";

const ID = "3f2a1b9c8d7e".padEnd(64, "0");
const UID = "0d3e2f7a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
const POD_PATH = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll("-", "_")}.slice/cri-containerd-${ID}.scope`;
const PODMAN_PATH = `/libpod_parent/libpod-${ID}`;
const plain = { bold: (s: string) => s, red: (s: string) => s, dim: (s: string) => s };

describe("container fields", () => {
  test("a pod's name and namespace come from its files only in Kubernetes; a plain container's hostname is its own", () => {
    expect(containerFields(POD_PATH, { hostname: "web-7d9f", podNamespace: "shop" })).toEqual({
      runtime: "containerd",
      id: ID,
      pod_uid: UID,
      qos_class: "burstable",
      pod_name: "web-7d9f",
      pod_namespace: "shop",
    });
    expect(containerFields(PODMAN_PATH, { hostname: "3f2a1b9c8d7e" })).toEqual({
      runtime: "podman",
      id: ID,
      pod_uid: null,
      qos_class: null,
      pod_name: null,
      pod_namespace: null,
    });
    expect(placementFields({ cgroup: "/user.slice/user-1000.slice/session-3.scope", nsPid: 77 })).toEqual({
      cgroup: "/user.slice/user-1000.slice/session-3.scope",
      ns_pid: 77,
      container: null,
    });
    expect(placementFields({})).toEqual({ cgroup: null, ns_pid: null, container: null });
  });

  test("described by pod, else by container", () => {
    expect(describeContainer(containerFields(POD_PATH, { hostname: "web-7d9f", podNamespace: "shop" }))).toBe(
      "pod shop/web-7d9f (container containerd 3f2a1b9c8d7e)",
    );
    expect(describeContainer(containerFields(POD_PATH, {}))).toBe(`pod ${UID} (container containerd 3f2a1b9c8d7e)`);
    expect(describeContainer(containerFields(PODMAN_PATH, {}), " in ")).toBe(" in container podman 3f2a1b9c8d7e");
    expect(describeContainer(null, " in ")).toBe("");
  });

  test("the summary's first line names the container and both pids; the cgroup follows", () => {
    const text = renderKillSummary(killEvent({ cgroup: PODMAN_PATH, ns_pid: 1, container: containerFields(PODMAN_PATH, {}) }), undefined, plain);
    const [first, second] = text.split("\n");
    expect(first).toBe("oomprof: OOM kill of leaker (pid 4242, 1 in its namespace) in container podman 3f2a1b9c8d7e");
    expect(second).toBe(`  cgroup ${PODMAN_PATH}`);
    const host = renderKillSummary(killEvent({ cgroup: "/oomprof-1-a", ns_pid: 4242, limit_bytes: 64 << 20 }), undefined, plain);
    expect(host.split("\n")[0]).toBe("oomprof: OOM kill of leaker (pid 4242) in cgroup /oomprof-1-a (limit 64.0 MiB)");
  });

  test("uploads carry the identity as labels, with Kubernetes' own names for pod and namespace", () => {
    const labels = containerLabels(containerFields(POD_PATH, { hostname: "web-7d9f", podNamespace: "shop" }));
    expect(labels).toEqual({ container_runtime: "containerd", container_id: ID, pod_uid: UID, qos_class: "burstable", pod: "web-7d9f", namespace: "shop" });
    expect(uploadLabels({ appName: "", pid: 1, comm: "leaker", startSec: 0, endSec: 1, labels })).toContainEqual(["namespace", "shop"]);
    expect(containerLabels(null)).toEqual({});
  });
});
