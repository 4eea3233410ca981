import type { ContainerFields } from "../cgroup/process-placement.ts";
/** Human-readable byte counts in binary units, as memory limits are written. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function formatPercent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/** "1,234 goroutines", or "at most 1,234 goroutines" when the count is an upper bound. */
export function formatGoroutines(count: number, atMost: boolean): string {
  return `${atMost ? "at most " : ""}${count.toLocaleString("en-US")} goroutine${count === 1 ? "" : "s"}`;
}

/** "pod shop/web-7d9f (container containerd 3f2a1b9c8d7e)", "container podman 3f2a1b9c8d7e", or "" outside one. */
export function describeContainer(c: ContainerFields | null, prefix = ""): string {
  if (!c) return "";
  const container = c.id ? `container ${c.runtime === "unknown" ? "" : `${c.runtime} `}${c.id.slice(0, 12)}` : "";
  if (!c.pod_uid) return container && prefix + container;
  const pod = c.pod_name ? (c.pod_namespace ? `${c.pod_namespace}/${c.pod_name}` : c.pod_name) : c.pod_uid;
  return `${prefix}pod ${pod}${container ? ` (${container})` : ""}`;
}

/** The parts of the `memory` object, named as the summary names them. */
const MEMORY_PARTS = [
  ["heap_inuse_bytes", "Go heap"],
  ["stacks_bytes", "stacks"],
  ["runtime_other_bytes", "runtime"],
  ["not_go_bytes", "outside Go"],
] as const;

export type MemoryParts = Record<(typeof MEMORY_PARTS)[number][0], number | null>;

/**
 * "RSS 229.9 MiB = Go heap 198.6 + stacks 3.1 + runtime 9.8 + outside Go 18.4 (largest: Go heap)",
 * every part in RSS's unit ("- not resident 16.3" when the runtime mapped more than is
 * resident); without RSS, the runtime's three parts alone. Undefined when the runtime's
 * figures are unknown.
 */
export function formatMemoryBreakdown(rssBytes: number | null, m: MemoryParts): string | undefined {
  if (m.heap_inuse_bytes === null || m.stacks_bytes === null || m.runtime_other_bytes === null) return undefined;
  const known = MEMORY_PARTS.filter(([k]) => m[k] !== null);
  const scaleOf = rssBytes ?? m.heap_inuse_bytes + m.stacks_bytes + m.runtime_other_bytes;
  const unit = formatBytes(scaleOf).split(" ")[1]!;
  const divisor = 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].indexOf(unit);
  const num = (n: number) => (divisor === 1 ? String(n) : (n / divisor).toFixed(1));
  const terms = known.map(([k, name], i) => {
    const v = m[k]!;
    // Below zero, RSS is smaller than what the runtime mapped: that much of it was never touched (at least).
    if (k === "not_go_bytes" && v < 0) return `- not resident ${num(-v)}`;
    return i === 0 ? `${name} ${num(v)}` : `+ ${name} ${num(v)}`;
  });
  const largest = known.reduce((a, b) => (m[b[0]]! > m[a[0]]! ? b : a))[1];
  const sum = terms.join(" ");
  return rssBytes === null
    ? `Go runtime ${formatBytes(scaleOf)} = ${sum} (largest: ${largest}; RSS unknown)`
    : `RSS ${formatBytes(rssBytes)} = ${sum} (largest: ${largest})`;
}
