import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

// The child must run exactly as it would without oomprof: argv, environment,
// working directory, stdin and stdout, and its exit status passes through.
// Real bpftrace attach, Go builds and OOM kills take seconds.
setDefaultTimeout(180_000);

describe("oomprof run passes the child through untouched", () => {
  test("argv, env, cwd, stdin and exit code", async () => {
    const cwd = tempDir();
    const r = await runOomprof(
      ["run", "--quiet", "--out", cwd, "--", "sh", "-c", 'echo "args=$1|$2 env=$MYVAR cwd=$(pwd)"; read line; echo "stdin=$line"; exit 3', "sh", "a b", "c"],
      {
        cwd,
        env: { MYVAR: "hello" },
        stdin: "from-stdin\n",
      },
    );
    expect(r.status).toBe(3);
    expect(r.stdout).toContain(`args=a b|c env=hello cwd=${cwd}`);
    expect(r.stdout).toContain("stdin=from-stdin");
  });

  test("a child killed by a signal gives 128+N", async () => {
    const r = await runOomprof(["run", "--quiet", "--out", tempDir(), "--", "sh", "-c", "kill -TERM $$"]);
    expect(r.status).toBe(143);
  });

  test("SIGTERM sent to oomprof is forwarded to the child", async () => {
    const { oomprofArgv } = await import("../helpers/oomprof.ts");
    const p = Bun.spawn([...oomprofArgv(), "run", "--out", tempDir(), "--events", "-", "--", "sleep", "30"], { stdout: "pipe", stderr: "pipe" });
    // Wait until the child is started (the start event), then signal oomprof itself.
    const reader = p.stdout.getReader();
    let seen = "";
    while (!seen.includes('"event":"start"')) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    p.kill("SIGTERM");
    expect(await p.exited).toBe(143);
  });

  test("a missing command exits 127 with one line on stderr", async () => {
    const r = await runOomprof(["run", "--out", tempDir(), "--", "no-such-command-oomprof"]);
    expect(r.status).toBe(127);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("command not found");
  });

  test("a bad --limit is one line and status 2", async () => {
    const r = await runOomprof(["run", "--limit", "lots", "--", "true"]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("--limit");
  });
});

describe("conventions", () => {
  test("--version names the bpftrace it found", async () => {
    const r = await runOomprof(["--version"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^oomprof \d+\.\d+\.\d+ \(bpftrace \d+\.\d+\.\d+ at \S+\)/);
  });

  test("--log-format json: every stderr line oomprof writes is a JSON object", async () => {
    const r = await runOomprof(["run", "--log-format", "json", "--out", tempDir(), "--", "true"]);
    expect(r.status).toBe(0);
    const lines = r.stderr.trim().split("\n").filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(JSON.parse(l)).toHaveProperty("level");
  });

  test.each(["run", "watch", "snapshot", "report", "doctor", "probes"])("%s --help shows an example", async (cmd) => {
    const r = await runOomprof([cmd, "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Examples:");
  });
});
