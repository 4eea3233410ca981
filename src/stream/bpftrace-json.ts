import { z } from "zod";

/**
 * The envelope of bpftrace's `-f json` output: one JSON object per line. Only the
 * message types oomprof acts on are modelled; anything else is passed through as
 * "other" so a newer bpftrace cannot break the stream.
 */
export const BpftraceMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("attached_probes"), data: z.object({ probes: z.number() }) }),
  z.object({ type: z.literal("printf"), data: z.string() }),
  // Before 0.19 lost events are reported per perf buffer, later as one count.
  z.object({ type: z.literal("lost_events"), data: z.object({ events: z.union([z.number(), z.string()]) }) }),
  z.object({ type: z.literal("helper_error"), msg: z.string().optional(), helper: z.string().optional() }).passthrough(),
]);
export type BpftraceMessage = z.infer<typeof BpftraceMessage>;

export type ParsedLine = BpftraceMessage | { type: "other"; raw: unknown } | { type: "invalid"; line: string };

export function parseBpftraceLine(line: string): ParsedLine {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { type: "invalid", line };
  }
  const r = BpftraceMessage.safeParse(raw);
  if (r.success) return r.data;
  if (typeof raw === "object" && raw !== null && "type" in raw) return { type: "other", raw };
  return { type: "invalid", line };
}
