import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { buildGoProgram } from "../helpers/go.ts";
import { runOomprof, tempDir } from "../helpers/oomprof.ts";

setDefaultTimeout(180_000);

describe("run --upload: each profile also goes to a Pyroscope-compatible server", () => {
  const received: Array<{ path: string; query: URLSearchParams; profile: Profile }> = [];
  // A real local HTTP server that accepts only what parses as a pprof profile.
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const form = await req.formData();
      const file = form.get("profile");
      if (!(file instanceof Blob)) return new Response("no profile field", { status: 400 });
      try {
        const profile = Profile.decode(gunzipSync(new Uint8Array(await file.arrayBuffer())));
        received.push({ path: url.pathname, query: url.searchParams, profile });
        return new Response("ok");
      } catch {
        return new Response("not pprof", { status: 422 });
      }
    },
  });
  afterAll(() => server.stop(true));

  test("the OOM profile arrives, parses as pprof, and names the leak", async () => {
    const leaker = await buildGoProgram("leaker");
    const r = await runOomprof(["run", "--limit", "96M", "--out", tempDir(), "--events", "-", "--upload", `http://127.0.0.1:${server.port}`, "--", leaker]);
    expect(r.status).toBe(137);
    const up = r.events.find((e) => e.event === "upload");
    if (up?.event !== "upload") throw new Error(r.stderr);
    expect(up.ok).toBe(true);
    expect(received).toHaveLength(1);
    expect(received[0]!.path).toBe("/ingest");
    expect(received[0]!.query.get("format")).toBe("pprof");
    expect(received[0]!.profile.stringTable.strings).toContain("main.leakStep");
    // The exit event still comes last.
    expect(r.events.at(-1)?.event).toBe("exit");
  });

  test("an unreachable server: the upload fails after retries, the profile stays on disk", async () => {
    const leaker = await buildGoProgram("leaker");
    const r = await runOomprof(["run", "--limit", "96M", "--out", tempDir(), "--events", "-", "--upload", "http://127.0.0.1:9", "--", leaker]);
    expect(r.status).toBe(137);
    const up = r.events.find((e) => e.event === "upload");
    if (up?.event !== "upload") throw new Error(r.stderr);
    expect(up.ok).toBe(false);
    expect(up.attempts).toBeGreaterThan(1);
    expect(existsSync(up.profile)).toBe(true);
    expect(r.stderr).toContain("stays on disk");
  });

  test("a bad --upload URL is one line and status 2", async () => {
    const r = await runOomprof(["run", "--upload", "ftp://x", "--", "true"]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});
