import { z } from "zod";
import type { MemoryBreakdown } from "../gobinary/memstats-layout.ts";

/**
 * The memory breakdown travels inside the profile as a comment, so `oomprof report` can
 * show it from the .pb.gz alone: one line of `name=bytes` pairs ("-" where unknown),
 * written and read only here.
 */
const PREFIX = "memory bytes: ";
const NAMES = ["rss", "heap_inuse", "stacks", "runtime_other", "not_go"] as const;

export interface MemoryComment extends MemoryBreakdown {
  rss_bytes: number | null;
}

export function memoryComment(rssBytes: number | null, m: MemoryBreakdown): string {
  const values = [rssBytes, m.heap_inuse_bytes, m.stacks_bytes, m.runtime_other_bytes, m.not_go_bytes];
  return PREFIX + NAMES.map((n, i) => `${n}=${values[i] ?? "-"}`).join(" ");
}

const Value = z.union([
  z.literal("-").transform(() => null),
  z
    .string()
    .regex(/^-?\d{1,16}$/)
    .transform(Number),
]);

export function isMemoryComment(comment: string): boolean {
  return comment.startsWith(PREFIX);
}

/** The breakdown a profile's comments carry, or undefined (an older profile, or not oomprof's). */
export function parseMemoryComment(comments: readonly string[]): MemoryComment | undefined {
  const line = comments.find(isMemoryComment);
  if (!line) return undefined;
  const pairs = line.slice(PREFIX.length).split(" ");
  if (pairs.length !== NAMES.length) return undefined;
  const v: Array<number | null> = [];
  for (const [i, pair] of pairs.entries()) {
    const [name, raw] = pair.split("=");
    const parsed = Value.safeParse(raw);
    if (name !== NAMES[i] || !parsed.success) return undefined;
    v.push(parsed.data);
  }
  return { rss_bytes: v[0]!, heap_inuse_bytes: v[1]!, stacks_bytes: v[2]!, runtime_other_bytes: v[3]!, not_go_bytes: v[4]! };
}
