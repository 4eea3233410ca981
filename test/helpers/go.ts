import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const CACHE = join(ROOT, ".cache", "go-bin");

/** The `go` toolchain the tests build with: $OOMPROF_GO, else go on PATH. */
export function goTool(): string {
  return process.env.OOMPROF_GO ?? "go";
}

/**
 * Builds test/go/<name> with the given toolchain and flags, once per test run
 * (cached by toolchain version and flags), and returns the binary's path.
 */
export async function buildGoProgram(name: string, opts: { go?: string; flags?: string[] } = {}): Promise<string> {
  const go = opts.go ?? goTool();
  const flags = opts.flags ?? [];
  const version = Bun.spawnSync([go, "env", "GOVERSION"]).stdout.toString().trim() || "go";
  // The cache key includes the sources, so an edited test program is rebuilt.
  const dir = join(ROOT, "test", "go", name);
  const hash = new Bun.CryptoHasher("sha256");
  for (const f of readdirSync(dir).sort()) if (/\.(go|mod)$/.test(f)) hash.update(readFileSync(join(dir, f)));
  const tag = [name, version, ...flags, hash.digest("hex").slice(0, 12)].join("_").replace(/[^A-Za-z0-9._-]/g, "_");
  // The binary keeps the program's name (it becomes the comm the kernel reports).
  const out = join(CACHE, tag, name);
  if (existsSync(out)) return out;
  mkdirSync(join(CACHE, tag), { recursive: true });
  const p = Bun.spawnSync([go, "build", ...flags, "-o", out, "."], {
    cwd: join(ROOT, "test", "go", name),
    env: { ...process.env, GOFLAGS: "-mod=mod", GOCACHE: join(ROOT, ".cache", "gocache"), GOPATH: join(ROOT, ".cache", "gopath"), CGO_ENABLED: "0" },
    stderr: "pipe",
  });
  if (p.exitCode !== 0) throw new Error(`go build ${name} failed: ${p.stderr.toString()}`);
  return out;
}
