import { readFileSync } from "node:fs";

/**
 * The buckets whose counters (C) and stacks (S) a recorded stream (OOMPROF_RECORD_STREAM)
 * carried for pid. One printf may carry several records: the walk prints three buckets'
 * counters at once on bpftrace 0.17-0.20, eight from 0.23. From 0.27 counters go through
 * the walk's map instead, and its B line says how many (inMap).
 */
export function bucketsSent(file: string, pid: number): { counters: Set<string>; stacks: Set<string>; inMap: number } {
  const sent = { counters: new Set<string>(), stacks: new Set<string>(), inMap: 0 };
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const msg = line.startsWith("{") ? (JSON.parse(line) as { type?: string; data?: unknown }) : undefined;
    if (msg?.type !== "printf" || typeof msg.data !== "string") continue;
    for (const record of msg.data.split("\n")) {
      // 0.27+: the walk put this many buckets' counters in its map (probes/walk/counter-map.bt).
      const b = /^B (\d+) (\d+)$/.exec(record);
      if (b && Number(b[1]) === pid) sent.inMap += Number(b[2]);
      const m = /^([CS]) (\d+) ([0-9a-f]+) /.exec(record);
      // Bucket 0: the while walk's second line of a printf, past the end of the list.
      if (m && Number(m[2]) === pid && m[3] !== "0") (m[1] === "C" ? sent.counters : sent.stacks).add(m[3]!);
    }
  }
  return sent;
}
