import { describe, expect, test } from "bun:test";
import { containerFromCgroupPath, type ContainerIdentity } from "../../src/cgroup/container-identity.ts";

/** Cgroup paths as runtimes and the kubelet make them (both cgroup versions show the same path), and who they name. */

const ID = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779";
const ID2 = "d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22";
const UID = "55c6c714-b240-4dec-9a45-57b61696ab6e";
const UID_ = UID.replaceAll("-", "_"); // as a systemd slice name spells it
const STATIC_UID = "8daa50c3a64c9ff60bb9eab7b44b56fd"; // a static pod's UID is its config hash

const k8s = (runtime: ContainerIdentity["runtime"], id: string | null, qos: ContainerIdentity["qos_class"], pod = UID): ContainerIdentity => ({
  runtime,
  id,
  pod_uid: pod,
  qos_class: qos,
});
const plain = (runtime: ContainerIdentity["runtime"], id = ID): ContainerIdentity => ({ runtime, id, pod_uid: null, qos_class: null });

function expectCases(cases: [string, ContainerIdentity | null][]): void {
  for (const [path, want] of cases) expect({ path, got: containerFromCgroupPath(path) }).toEqual({ path, got: want });
}

describe("containerFromCgroupPath: Kubernetes, systemd driver", () => {
  test("containerd, CRI-O (and its conmon), dockershim containers per QoS class", () => {
    expectCases([
      [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`, k8s("containerd", ID, "burstable")],
      [`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`, k8s("containerd", ID, "besteffort")],
      [`/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`, k8s("containerd", ID, "guaranteed")],
      [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope`, k8s("cri-o", ID, "burstable")],
      [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-conmon-${ID}.scope`, k8s("cri-o", ID, "burstable")],
      [`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/docker-${ID}.scope`, k8s("docker", ID, "besteffort")],
      [`/kubepods.slice/kubepods-pod${UID_}.slice/docker-${ID}.scope`, k8s("docker", ID, "guaranteed")],
    ]);
  });

  test("a static pod's UID is 32 hex, kept as it is", () => {
    expectCases([
      [
        `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${STATIC_UID}.slice/cri-containerd-${ID}.scope`,
        k8s("containerd", ID, "burstable", STATIC_UID),
      ],
    ]);
  });

  test("the pod-level cgroup, or a leaf no runtime makes: the pod alone", () => {
    expectCases([
      [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`, k8s("unknown", null, "burstable")],
      [`/kubepods.slice/kubepods-pod${UID_}.slice`, k8s("unknown", null, "guaranteed")],
      [`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/something-else.scope`, k8s("unknown", null, "besteffort")],
    ]);
  });

  test("QoS and node-level cgroups name no pod", () => {
    expectCases([
      ["/kubepods.slice", null],
      ["/kubepods.slice/kubepods-burstable.slice", null],
      ["/kubepods", null],
      ["/kubepods/besteffort", null],
    ]);
  });
});

describe("containerFromCgroupPath: Kubernetes, cgroupfs driver", () => {
  test("a bare id leaf: runtime unknown", () => {
    expectCases([
      [`/kubepods/burstable/pod${UID}/${ID}`, k8s("unknown", ID, "burstable")],
      [`/kubepods/besteffort/pod${UID}/${ID}`, k8s("unknown", ID, "besteffort")],
      [`/kubepods/pod${UID}/${ID}`, k8s("unknown", ID, "guaranteed")],
      [`/kubepods/burstable/pod${STATIC_UID}/${ID}`, k8s("unknown", ID, "burstable", STATIC_UID)],
    ]);
  });

  test("a prefixed leaf names its runtime", () => {
    expectCases([
      [`/kubepods/burstable/pod${UID}/crio-${ID}`, k8s("cri-o", ID, "burstable")],
      [`/kubepods/burstable/pod${UID}/crio-conmon-${ID}`, k8s("cri-o", ID, "burstable")],
      [`/kubepods/pod${UID}/cri-containerd-${ID}`, k8s("containerd", ID, "guaranteed")],
      [`/kubepods/besteffort/pod${UID}/docker-${ID}`, k8s("docker", ID, "besteffort")],
    ]);
  });

  test("pod level; a pod directory outside kubepods is not a pod", () => {
    expectCases([
      [`/kubepods/burstable/pod${UID}`, k8s("unknown", null, "burstable")],
      [`/kubepods/pod${UID}`, k8s("unknown", null, "guaranteed")],
      [`/somewhere/pod${UID}/${ID}`, null],
      [`/burstable/pod${UID}/${ID}`, null],
    ]);
  });
});

describe("containerFromCgroupPath: identity anywhere in the path", () => {
  test("cgroup namespace prefixes and a container's own sub-cgroups", () => {
    expectCases([
      [`/../../kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`, k8s("containerd", ID, "burstable")],
      [`/../../../kubepods/besteffort/pod${UID}/${ID}`, k8s("unknown", ID, "besteffort")],
      [`/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope/init.scope`, k8s("containerd", ID, "guaranteed")],
      [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope/container`, k8s("cri-o", ID, "burstable")],
      [`/kubepods/burstable/pod${UID}/${ID}/child/grandchild`, k8s("unknown", ID, "burstable")],
      [`/system.slice/docker-${ID}.scope/init.scope`, plain("docker")],
    ]);
  });

  test("kind, minikube and k3d nodes: kubepods under the node's own container", () => {
    expectCases([
      // kind (cgroup root /kubelet, systemd driver)
      [
        `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`,
        k8s("containerd", ID, "besteffort"),
      ],
      [
        `/system.slice/docker-${ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`,
        k8s("containerd", ID, "guaranteed"),
      ],
      // the pod, not the node's container, when the pod is the deepest thing named
      [`/system.slice/docker-${ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod${UID_}.slice`, k8s("unknown", null, "guaranteed")],
      // minikube with CRI-O in a docker node (cgroup v1)
      [`/docker/${ID2}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope`, k8s("cri-o", ID, "besteffort")],
      // k3s in docker (k3d), cgroupfs
      [`/docker/${ID2}/kubepods/burstable/pod${UID}/${ID}`, k8s("unknown", ID, "burstable")],
      [`/docker/${ID2}/kubepods/burstable/pod${UID}`, k8s("unknown", null, "burstable")],
      // a custom kubelet cgroup root
      [`/kubelet/kubepods/pod${UID}/${ID}`, k8s("unknown", ID, "guaranteed")],
      [`/container.slice/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`, k8s("containerd", ID, "guaranteed")],
    ]);
  });

  test("the kubelet on systemd, containerd on cgroupfs: the literal `slice:prefix:id` cgroup", () => {
    expectCases([
      [`/system.slice/containerd.service/kubepods-burstable-pod${UID_}.slice:cri-containerd:${ID}`, k8s("containerd", ID, "burstable")],
      [`/system.slice/containerd.service/kubepods-pod${UID_}.slice:cri-containerd:${ID}`, k8s("containerd", ID, "guaranteed")],
      [`/system.slice/crio.service/kubepods-besteffort-pod${UID_}.slice:crio:${ID}`, k8s("cri-o", ID, "besteffort")],
      [`/system.slice/containerd.service/kubepods-burstable-pod${UID_}.slice:cri-containerd:webapp`, k8s("unknown", null, "burstable")],
    ]);
  });

  test("the innermost container wins: docker in docker, a docker inside a pod", () => {
    expectCases([
      [`/docker/${ID2}/docker/${ID}`, plain("docker")],
      [`/system.slice/docker-${ID2}.scope/docker/${ID}`, plain("docker")],
      [`/kubepods/burstable/pod${UID}/${ID2}/docker/${ID}`, k8s("docker", ID, "burstable")],
    ]);
  });
});

describe("containerFromCgroupPath: without Kubernetes", () => {
  test("docker: cgroupfs and systemd drivers, rootless", () => {
    expectCases([
      [`/docker/${ID}`, plain("docker")],
      [`/system.slice/docker-${ID}.scope`, plain("docker")],
      [`/user.slice/user-1000.slice/user@1000.service/docker-${ID}.scope`, plain("docker")],
    ]);
  });

  test("podman: cgroupfs, systemd, rootless, conmon, pods, a systemd container's own cgroupns", () => {
    expectCases([
      [`/libpod_parent/libpod-${ID}`, plain("podman")],
      [`/machine.slice/libpod-${ID}.scope`, plain("podman")],
      [`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope`, plain("podman")],
      [`/machine.slice/libpod-conmon-${ID}.scope`, plain("podman")],
      [`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-${ID}.scope`, plain("podman")],
      [`/machine.slice/machine-libpod_pod_${ID2}.slice/libpod-${ID}.scope`, plain("podman")],
      [`/machine.slice/libpod-${ID}.scope/container`, plain("podman")],
      [`/libpod-${ID}.scope/container`, plain("podman")],
    ]);
  });

  test("containerd: ctr/nerdctl cgroupfs (namespace default), nerdctl systemd, CRI outside kubepods", () => {
    expectCases([
      [`/default/${ID}`, plain("containerd")],
      [`/system.slice/nerdctl-${ID}.scope`, plain("containerd")],
      [`/system.slice/system-getty.slice/cri-containerd-${ID}.scope`, plain("containerd")],
      [`/system.slice/crio-${ID}.scope`, plain("cri-o")],
      [`/system.slice/crio-conmon-${ID}.scope`, plain("cri-o")],
    ]);
  });
});

describe("containerFromCgroupPath: no container", () => {
  test("host processes, services, sessions, oomprof's own cgroups", () => {
    expectCases([
      ["/", null],
      ["", null],
      ["/init.scope", null],
      ["/user.slice/user-1000.slice/session-3.scope", null],
      ["/user.slice/user-1000.slice/user@1000.service/app.slice/podman-12345.scope", null],
      ["/system.slice/ssh.service", null],
      ["/system.slice/docker.service", null],
      ["/system.slice/containerd.service", null],
      ["/system.slice/kubelet.service", null],
      ["/oomprof-12345-abc", null],
    ]);
  });

  test("a bare id under a parent that does not say whose: too ambiguous", () => {
    expectCases([
      [`/${ID}`, null],
      [`/ecs/task/${ID}`, null],
      [`/system.slice/${ID}`, null],
      [`/constructor/${ID}`, null],
    ]);
  });

  test("ids that are not 64 hex", () => {
    expectCases([
      [`/docker/${ID.slice(1)}`, null],
      [`/docker/${ID}0`, null],
      [`/system.slice/docker-${ID.slice(0, 12)}.scope`, null],
      [`/machine.slice/libpod-${ID.replace("0", "g")}.scope`, null],
    ]);
  });
});

describe("containerFromCgroupPath: robustness", () => {
  test("surrounding whitespace is trimmed; ids and UIDs come out lowercase", () => {
    expectCases([
      [`/docker/${ID}\n`, plain("docker")],
      [`  /system.slice/docker-${ID}.scope \t\n`, plain("docker")],
      [`/docker/${ID.toUpperCase()}`, plain("docker")],
      [`/kubepods/burstable/pod${UID.toUpperCase()}/${ID.toUpperCase()}\n`, k8s("unknown", ID, "burstable")],
    ]);
  });

  test("never throws, and whatever it returns is well formed", () => {
    // A seeded generator, so a failure reproduces.
    let seed = 0x9e3779b9;
    const rand = (n: number) => {
      seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
      return seed % n;
    };
    const pieces = ["/", "-", "_", ".", ":", "..", "kubepods", "kubepods-", "pod", ".slice", ".scope", "burstable", "besteffort", "docker", "crio-", "libpod-"];
    pieces.push("cri-containerd-", "conmon-", "default", ID, ID2, UID, UID_, "\n", " ", "\u0000", "é", "\ud800", "A", "f", "0", "constructor", "__proto__");
    for (let n = 0; n < 5000; n++) {
      let s = "";
      const len = rand(24);
      for (let k = 0; k < len; k++) s += rand(4) === 0 ? String.fromCharCode(rand(0x10000)) : pieces[rand(pieces.length)];
      let got: ContainerIdentity | null = null;
      expect(() => (got = containerFromCgroupPath(s))).not.toThrow();
      const r = got as ContainerIdentity | null;
      if (r === null) continue;
      expect(["containerd", "cri-o", "docker", "podman", "unknown"]).toContain(r.runtime);
      if (r.id !== null) expect(r.id).toMatch(/^[0-9a-f]{64}$/);
      if (r.pod_uid !== null) expect(r.pod_uid).toMatch(/^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/);
      expect(r.qos_class === null).toBe(r.pod_uid === null);
      expect(r.id !== null || r.pod_uid !== null).toBe(true);
    }
    for (const odd of [null, undefined, 42, {}] as unknown as string[]) expect(containerFromCgroupPath(odd)).toBeNull();
  });
});
