import { z } from "zod";
import type { ElfFile } from "./elf.ts";

/**
 * Go's build information, read from the `.go.buildinfo` section the linker writes
 * (the same data `go version -m` prints). Layout per Go's debug/buildinfo: a
 * 32-byte header starting with "\xff Go buildinf:", then, from Go 1.18 on
 * (flag bit 2), the version and module info as varint-prefixed strings.
 */

export const BuildInfoSchema = z.object({
  goVersion: z.string().regex(/^(go|devel)/, "Go version string"),
  path: z.string().optional(),
  mainModule: z.object({ path: z.string(), version: z.string() }).optional(),
  settings: z.record(z.string(), z.string()),
});
export type BuildInfo = z.infer<typeof BuildInfoSchema>;

const utf8 = new TextDecoder();

/** Returns undefined when the binary has no Go build info (not a Go program). */
export function readBuildInfo(elf: ElfFile): BuildInfo | undefined {
  const data = elf.sectionData(".go.buildinfo");
  if (!data || data.length < 32) return undefined;
  // "\xff" encodes as two UTF-8 bytes, so compare the magic byte by byte.
  if (data[0] !== 0xff) return undefined;
  const tail = new TextEncoder().encode(" Go buildinf:");
  for (let i = 0; i < tail.length; i++) if (data[1 + i] !== tail[i]) return undefined;
  const flags = data[15] ?? 0;
  let version: string | undefined;
  let modinfo = "";
  if (flags & 2) {
    let at = 32;
    const v = readVarString(data, at);
    if (!v) return undefined;
    version = v.value;
    at = v.next;
    const m = readVarString(data, at);
    modinfo = m?.value ?? "";
  } else {
    version = readPointerString(elf, data, 16);
    modinfo = readPointerString(elf, data, 24) ?? "";
  }
  if (!version) return undefined;
  const parsed = BuildInfoSchema.safeParse({ goVersion: version, ...parseModInfo(modinfo) });
  return parsed.success ? parsed.data : undefined;
}

/** "go1.21.5" -> [1, 21]; undefined for devel builds. */
export function goMinorVersion(goVersion: string): number | undefined {
  const m = /^go1\.(\d+)/.exec(goVersion);
  return m ? Number(m[1]) : undefined;
}

function readVarString(data: Uint8Array, at: number): { value: string; next: number } | undefined {
  let len = 0;
  let shift = 0;
  for (;;) {
    if (at >= data.length || shift > 28) return undefined;
    const b = data[at++]!;
    len |= (b & 0x7f) << shift;
    if (!(b & 0x80)) break;
    shift += 7;
  }
  if (at + len > data.length) return undefined;
  return { value: utf8.decode(data.subarray(at, at + len)), next: at + len };
}

/** Pre-1.18 layout: the header holds pointers to Go string headers. */
function readPointerString(elf: ElfFile, data: Uint8Array, at: number): string | undefined {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (at + 8 > data.length) return undefined;
  const hdr = elf.readVirtual(v.getBigUint64(at, true), 16);
  if (!hdr) return undefined;
  const hv = new DataView(hdr.buffer, hdr.byteOffset, 16);
  const len = Number(hv.getBigUint64(8, true));
  if (len > 1 << 20) return undefined;
  const bytes = elf.readVirtual(hv.getBigUint64(0, true), len);
  return bytes ? utf8.decode(bytes) : undefined;
}

function parseModInfo(modinfo: string): Omit<BuildInfo, "goVersion"> {
  // Module info is framed by 16-byte sentinels; the lines between are tab-separated.
  const body = modinfo.length >= 32 ? modinfo.slice(16, -16) : modinfo;
  const settings: Record<string, string> = {};
  let path: string | undefined;
  let mainModule: { path: string; version: string } | undefined;
  for (const line of body.split("\n")) {
    const f = line.split("\t");
    if (f[0] === "path" && f[1]) path = f[1];
    else if (f[0] === "mod" && f[1]) mainModule = { path: f[1], version: f[2] ?? "" };
    else if (f[0] === "build" && f[1]) {
      const eq = f[1].indexOf("=");
      if (eq > 0) settings[f[1].slice(0, eq)] = f[1].slice(eq + 1);
    }
  }
  return { path, mainModule, settings };
}
