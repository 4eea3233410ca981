import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseBpftraceVersion } from "../../src/probes/bpftrace-host.ts";
import { chooseWalk } from "../../src/probes/walk-templates.ts";
import { runOomprof } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

const ROOT = resolve(import.meta.dir, "../..");
const TEST_USER = "oomprof-test";
const CHECK_NAMES = ["privileges", "bpftrace", "walk", "tracefs", "tracepoints", "uprobes", "kprobes", "btf", "memory cgroup", "memlock"];

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

function lines(s: string): string[] {
  return s.split("\n").filter((l) => l.trim() !== "");
}

/** uid and gid of the unprivileged test user, created (without a home) if missing. */
function testUser(): { uid: number; gid: number } {
  const id = (flag: string) => Bun.spawnSync(["id", flag, TEST_USER], { stderr: "ignore" });
  if (id("-u").exitCode !== 0) {
    const add = Bun.spawnSync(["useradd", "-M", "-s", "/usr/sbin/nologin", TEST_USER], { stderr: "pipe" });
    if (add.exitCode !== 0) throw new Error(`useradd ${TEST_USER} failed: ${add.stderr.toString()}`);
  }
  return { uid: Number(id("-u").stdout.toString().trim()), gid: Number(id("-g").stdout.toString().trim()) };
}

describe("oomprof doctor", () => {
  let asRoot: Result;
  let asRootJson: Result;
  let asUser: Result;
  let asUserJson: Result;
  let scratch: string;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error("these tests need root (they compare root with an unprivileged user)");
    asRoot = await runOomprof(["doctor"]);
    asRootJson = await runOomprof(["doctor", "--json"]);

    const { uid, gid } = testUser();
    scratch = mkdtempSync(join(tmpdir(), "oomprof-doctor-"));
    chmodSync(scratch, 0o755);
    const home = join(scratch, "home");
    mkdirSync(home);
    chmodSync(home, 0o777);

    // What the test user runs: the compiled binary ($OOMPROF_BIN) copied somewhere it
    // can execute, else /usr/bin/bun on the sources, copied if the user cannot read them.
    let argv: string[];
    if (process.env.OOMPROF_BIN) {
      const bin = join(scratch, "oomprof");
      copyFileSync(resolve(process.env.OOMPROF_BIN), bin);
      chmodSync(bin, 0o755);
      argv = [bin];
    } else {
      const bun = existsSync("/usr/bin/bun") ? "/usr/bin/bun" : process.execPath;
      let main = join(ROOT, "src/cli/main.ts");
      const readable = Bun.spawnSync([
        "setpriv",
        `--reuid=${uid}`,
        `--regid=${gid}`,
        "--clear-groups",
        "sh",
        "-c",
        `test -r "$1" && test -r "$2"`,
        "sh",
        main,
        join(ROOT, "node_modules/zod/package.json"),
      ]);
      if (readable.exitCode !== 0) {
        const copy = join(scratch, "oomprof");
        for (const part of ["src", "probes", "package.json", "node_modules/cac", "node_modules/pprof-format", "node_modules/zod"]) {
          cpSync(join(ROOT, part), join(copy, part), { recursive: true });
        }
        Bun.spawnSync(["chmod", "-R", "a+rX", copy]);
        main = join(copy, "src/cli/main.ts");
      }
      argv = [bun, main];
    }
    const env = {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: home,
      TMPDIR: home,
      BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0",
      ...(process.env.OOMPROF_BPFTRACE ? { OOMPROF_BPFTRACE: process.env.OOMPROF_BPFTRACE } : {}),
    };
    const asTestUser = async (args: string[]): Promise<Result> => {
      const p = Bun.spawn(["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", ...argv, ...args], {
        cwd: scratch,
        env,
        stdout: "pipe",
        stderr: "pipe",
        stdin: "ignore",
      });
      const [stdout, stderr, status] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { status, stdout, stderr };
    };
    asUser = await asTestUser(["doctor"]);
    asUserJson = await asTestUser(["doctor", "--json"]);
  });

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  describe("as root on this host", () => {
    test("exits 0, and every line is ok or warn", () => {
      expect(asRoot.status).toBe(0);
      const out = lines(asRoot.stdout);
      expect(out.length).toBe(CHECK_NAMES.length);
      for (const l of out) expect(l).toMatch(/^(ok|warn) /);
      expect(asRoot.stderr).toContain("this host is ready");
    });

    test("one line per check, in order", () => {
      const names = lines(asRoot.stdout).map((l) => /^(?:ok|warn|FAIL) +(.+?) {2}/.exec(l)?.[1]);
      expect(names).toEqual(CHECK_NAMES);
    });

    test("bpftrace's version and the walk it will use", () => {
      const version = parseBpftraceVersion(Bun.spawnSync([process.env.OOMPROF_BPFTRACE ?? "bpftrace", "--version"]).stdout.toString());
      const out = lines(asRoot.stdout);
      expect(out.find((l) => / bpftrace /.test(l))).toContain(`bpftrace ${version.text}`);
      expect(out.find((l) => / walk /.test(l))).toMatch(new RegExp(`^ok +walk +${chooseWalk(version).name},`));
      expect(out.find((l) => / privileges /.test(l))).toMatch(/^ok +privileges +root \(uid 0\)/);
    });

    test("warnings say how to fix them", () => {
      for (const l of lines(asRoot.stdout).filter((l) => l.startsWith("warn"))) expect(l).toContain(" -- fix: ");
    });

    test("--json: one object with the same checks", () => {
      expect(asRootJson.status).toBe(0);
      expect(lines(asRootJson.stdout)).toHaveLength(1);
      const j = JSON.parse(asRootJson.stdout);
      expect(j.ready).toBe(true);
      expect(j.checks.map((c: { name: string }) => c.name)).toEqual(CHECK_NAMES);
      for (const c of j.checks) {
        expect(["ok", "warn"]).toContain(c.status);
        expect(typeof c.found).toBe("string");
      }
    });
  });

  describe(`as the unprivileged user ${TEST_USER}`, () => {
    test("exits 1 and says the host is not ready", () => {
      expect(asUser.stderr).not.toContain("internal error");
      expect(asUser.status).toBe(1);
      expect(asUser.stderr).toContain("not ready");
    });

    test("privileges FAIL, with a fix that mentions root or sudo", () => {
      const line = lines(asUser.stdout).find((l) => / privileges /.test(l));
      expect(line).toBeDefined();
      expect(line!).toMatch(/^FAIL +privileges +uid \d+ \(oomprof-test\), not root, without CAP_/);
      expect(line!).toMatch(/ -- fix: .*\b(root|sudo)\b/);
    });

    test("every FAIL line carries a fix", () => {
      const fails = lines(asUser.stdout).filter((l) => l.startsWith("FAIL"));
      expect(fails.length).toBeGreaterThan(0);
      for (const l of fails) expect(l).toContain(" -- fix: ");
    });

    test("--json: ready is false and privileges failed", () => {
      expect(asUserJson.status).toBe(1);
      const j = JSON.parse(asUserJson.stdout);
      expect(j.ready).toBe(false);
      const priv = j.checks.find((c: { name: string }) => c.name === "privileges");
      expect(priv.status).toBe("fail");
      expect(priv.fix).toMatch(/root|sudo/);
    });
  });
});
