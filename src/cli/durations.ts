import { z } from "zod";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "60s", "2m", "1.5h", "500ms" -> milliseconds; a bare 0 is zero (off). A unit is required otherwise. */
export const DurationSchema = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const text = String(v).trim();
  if (/^0+(\.0*)?$/.test(text)) return 0;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(text);
  if (!m) {
    ctx.addIssue({ code: "custom", message: `not a duration: ${JSON.stringify(v)} (use e.g. 60s, 2m, 500ms; 0 for none)` });
    return z.NEVER;
  }
  return Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
});
