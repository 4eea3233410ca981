import { z } from "zod";

const UNITS: Record<string, number> = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30, T: 2 ** 40 };

/** "256M", "1G", "512k", "1048576" -> bytes (binary units, as cgroups and ulimit use), at least `min`. */
export function sizeSchema(min: number, minText: string) {
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?$/.exec(String(v).trim());
    if (!m) {
      ctx.addIssue({ code: "custom", message: `not a size: ${JSON.stringify(v)} (use e.g. 256M, 1G)` });
      return z.NEVER;
    }
    const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
    if (bytes < min) {
      ctx.addIssue({ code: "custom", message: `size ${JSON.stringify(v)} is too small (at least ${minText})` });
      return z.NEVER;
    }
    return bytes;
  });
}

/** A memory limit: at least 1 MiB. */
export const SizeSchema = sizeSchema(1 << 20, "1M");
