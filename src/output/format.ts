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
