import { afterEach, describe, expect, test } from "bun:test";
import { gunzipSync, gzipSync } from "node:zlib";
import { Function as PFunction, Line, Location, Profile, Sample, StringTable, ValueType } from "pprof-format";
import { UserError } from "../../src/errors.ts";
import { PARCA_WRITE_RAW_PATH, parseUploadUrl, pyroscopeName, redactUrl, uploadProfile, type UploadMeta } from "../../src/output/upload/index.ts";

/** A two-frame heap profile, gzipped as oomprof writes it. */
function smallProfileGz(): Uint8Array<ArrayBuffer> {
  const strings = new StringTable();
  const s = (v: string) => strings.dedup(v);
  const fn = new PFunction({ id: 1, name: s("main.leak"), systemName: s("main.leak"), filename: s("/src/main.go") });
  const fn2 = new PFunction({ id: 2, name: s("main.main"), systemName: s("main.main"), filename: s("/src/main.go") });
  const profile = new Profile({
    sampleType: [new ValueType({ type: s("inuse_objects"), unit: s("count") }), new ValueType({ type: s("inuse_space"), unit: s("bytes") })],
    sample: [new Sample({ locationId: [1, 2], value: [3, 3072] })],
    location: [
      new Location({ id: 1, address: 0x401000, line: [new Line({ functionId: 1, line: 10 })] }),
      new Location({ id: 2, address: 0x402000, line: [new Line({ functionId: 2, line: 20 })] }),
    ],
    function: [fn, fn2],
    stringTable: strings,
    periodType: new ValueType({ type: s("space"), unit: s("bytes") }),
    period: 524288,
    timeNanos: 1_700_000_000_000_000_000n,
  });
  return new Uint8Array(gzipSync(profile.encode()));
}

/** Decodes an uploaded profile the way a server would, and checks it is the one sent. */
function expectOurProfile(bytes: Uint8Array) {
  const p = Profile.decode(gunzipSync(bytes));
  expect(p.sampleType.map((t) => p.stringTable.strings[Number(t.type)])).toEqual(["inuse_objects", "inuse_space"]);
  expect(p.sample).toHaveLength(1);
  expect(p.sample[0]!.value.map(Number)).toEqual([3, 3072]);
}

const meta: UploadMeta = { appName: "", pid: 4242, comm: "leaker", startSec: 1_700_000_000, endSec: 1_700_000_003, labels: { reason: "oom_kill" } };
const fast = { retries: 3, backoffMs: 5, timeoutMs: 2_000 };

const servers: Array<{ stop: (force?: boolean) => unknown }> = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
});
function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: handler });
  servers.push(server);
  return server;
}

describe("parseUploadUrl", () => {
  test("plain http(s) is Pyroscope; a path is kept as a prefix; a trailing /ingest is dropped", () => {
    expect(parseUploadUrl("http://pyroscope:4040")).toEqual({ url: "http://pyroscope:4040", kind: "pyroscope" });
    expect(parseUploadUrl("https://example.com/pyro/")).toEqual({ url: "https://example.com/pyro", kind: "pyroscope" });
    expect(parseUploadUrl("http://pyroscope:4040/ingest")).toEqual({ url: "http://pyroscope:4040", kind: "pyroscope" });
    expect(parseUploadUrl(" pyroscope+https://p.example:443 ")).toEqual({ url: "https://p.example", kind: "pyroscope" });
  });
  test("parca+http(s) is Parca", () => {
    expect(parseUploadUrl("parca+http://parca:7070")).toEqual({ url: "http://parca:7070", kind: "parca" });
    expect(parseUploadUrl("PARCA+HTTPS://parca.example/")).toEqual({ url: "https://parca.example", kind: "parca" });
  });
  test("credentials stay in the URL; redactUrl hides the password", () => {
    const t = parseUploadUrl("https://123456:glc_secret@profiles.example.net");
    expect(t.url).toBe("https://123456:glc_secret@profiles.example.net");
    expect(redactUrl(t.url)).toBe("https://123456:***@profiles.example.net");
  });
  test.each([
    [""],
    ["   "],
    ["pyroscope:4040"],
    ["localhost"],
    ["ftp://host"],
    ["grpc://parca:7070"],
    ["http://"],
    ["http://host:99999"],
    ["http://host/?x=1"],
    ["http://host#frag"],
    ["http://exa mple.com"],
  ])("rejects %p with a one-line UserError", (raw) => {
    let err: unknown;
    try {
      parseUploadUrl(raw);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).not.toContain("\n");
    expect((err as UserError).message).toContain("--upload");
    expect((err as UserError).exitCode).toBe(2);
  });
  test("a bad URL's message does not show its password", () => {
    expect(() => parseUploadUrl("http://u:hunter2@host/?q")).toThrow(/u:\*\*\*@host/);
  });
});

describe("pyroscopeName", () => {
  test("app{labels}, unquoted, with characters the key parser cannot take replaced", () => {
    expect(pyroscopeName(meta)).toBe("oomprof.leaker{pid=4242,comm=leaker,reason=oom_kill}");
    expect(pyroscopeName({ ...meta, appName: "my app/x", comm: "a,b}c", labels: { "k-1": "v=1", "9x": " y ", __name__: "no", service_name: "no" } })).toBe(
      "my_app_x{pid=4242,comm=a_b_c,k_1=v_1,_9x=y}",
    );
  });
});

describe("uploadProfile to Pyroscope", () => {
  test("POST /ingest with the pprof in multipart field `profile`", async () => {
    const gz = smallProfileGz();
    const seen: Array<{ method: string; path: string; query: URLSearchParams; contentType: string; auth: string | null; file: File; config: unknown }> = [];
    const server = serve(async (req) => {
      const url = new URL(req.url);
      const form = await req.formData();
      const file = form.get("profile");
      const config = form.get("sample_type_config");
      if (!(file instanceof File) || !(config instanceof File)) return new Response("missing form file", { status: 400 });
      seen.push({
        method: req.method,
        path: url.pathname,
        query: url.searchParams,
        contentType: req.headers.get("content-type") ?? "",
        auth: req.headers.get("authorization"),
        file,
        config: JSON.parse(await config.text()),
      });
      return new Response("", { status: 200 });
    });
    const target = parseUploadUrl(`http://user:p%40ss@127.0.0.1:${server.port}/prefix`);
    const r = await uploadProfile(target, gz, meta, fast);
    expect(r).toEqual({ ok: true, attempts: 1, status: 200 });
    expect(seen).toHaveLength(1);
    const got = seen[0]!;
    expect(got.method).toBe("POST");
    expect(got.path).toBe("/prefix/ingest");
    expect(got.contentType).toStartWith("multipart/form-data; boundary=");
    expect(got.auth).toBe(`Basic ${Buffer.from("user:p@ss").toString("base64")}`);
    expect(got.query.get("name")).toBe("oomprof.leaker{pid=4242,comm=leaker,reason=oom_kill}");
    expect(got.query.get("from")).toBe("1700000000");
    expect(got.query.get("until")).toBe("1700000003");
    expect(got.query.get("format")).toBe("pprof");
    expect(got.file.name).toBe("profile.pprof");
    const bytes = new Uint8Array(await got.file.arrayBuffer());
    expect(bytes).toEqual(gz);
    expectOurProfile(bytes);
    expect(got.config).toMatchObject({
      inuse_space: { units: "bytes", aggregation: "average", sampled: false },
      gc_live_objects: { units: "objects", aggregation: "average", sampled: false },
      alloc_space: { units: "bytes", aggregation: "sum", sampled: false },
    });
  });

  test("the name query parameter is URL-encoded", async () => {
    let rawQuery = "";
    const server = serve((req) => {
      rawQuery = req.url.slice(req.url.indexOf("?") + 1);
      return new Response("ok");
    });
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${server.port}`), smallProfileGz(), meta, fast);
    expect(r.ok).toBe(true);
    expect(rawQuery).toContain("name=oomprof.leaker%7Bpid%3D4242%2Ccomm%3Dleaker%2Creason%3Doom_kill%7D");
  });

  test("503 twice, then success: three attempts", async () => {
    let calls = 0;
    const server = serve(async (req) => {
      calls++;
      const file = (await req.formData()).get("profile");
      if (!(file instanceof File)) return new Response("no profile", { status: 400 });
      expectOurProfile(new Uint8Array(await file.arrayBuffer()));
      return calls <= 2 ? new Response("ingester busy", { status: 503 }) : new Response("ok");
    });
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${server.port}`), smallProfileGz(), meta, fast);
    expect(r).toEqual({ ok: true, attempts: 3, status: 200 });
    expect(calls).toBe(3);
  });

  test("429 is retried too", async () => {
    let calls = 0;
    const server = serve(() => (++calls === 1 ? new Response("slow down", { status: 429 }) : new Response("ok")));
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${server.port}`), smallProfileGz(), meta, fast);
    expect(r).toEqual({ ok: true, attempts: 2, status: 200 });
  });

  test("a server that always fails: ok false after retries+1 attempts, no throw", async () => {
    let calls = 0;
    const server = serve(() => {
      calls++;
      return new Response("internal\nerror", { status: 500 });
    });
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${server.port}`), smallProfileGz(), meta, { ...fast, retries: 2 });
    expect(r.ok).toBe(false);
    expect(r.attempts).toBe(3);
    expect(calls).toBe(3);
    expect(r.status).toBe(500);
    expect(r.error).toBe("HTTP 500 Internal Server Error: internal error");
  });

  test("a 4xx is not retried", async () => {
    let calls = 0;
    const server = serve(() => {
      calls++;
      return new Response("invalid application name", { status: 400 });
    });
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${server.port}`), smallProfileGz(), meta, fast);
    expect(r).toEqual({ ok: false, attempts: 1, status: 400, error: "HTTP 400 Bad Request: invalid application name" });
    expect(calls).toBe(1);
  });

  test("a redirect is reported, not followed", async () => {
    const server = serve(() => new Response(null, { status: 301, headers: { location: "https://elsewhere.example/ingest" } }));
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${server.port}`), smallProfileGz(), meta, fast);
    expect(r.ok).toBe(false);
    expect(r.attempts).toBe(1);
    expect(r.error).toContain("redirect to https://elsewhere.example/ingest");
  });

  test("an unreachable port: ok false with the network error", async () => {
    const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("") });
    const port = probe.port;
    probe.stop(true);
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${port}`), smallProfileGz(), meta, { ...fast, retries: 1 });
    expect(r.ok).toBe(false);
    expect(r.attempts).toBe(2);
    expect(r.status).toBeUndefined();
    expect(r.error).toBeTruthy();
  });

  test("each attempt is bounded by the timeout", async () => {
    const server = serve(() => new Promise<Response>(() => {}));
    const t0 = performance.now();
    const r = await uploadProfile(parseUploadUrl(`http://127.0.0.1:${server.port}`), smallProfileGz(), meta, { retries: 1, backoffMs: 5, timeoutMs: 150 });
    expect(r.ok).toBe(false);
    expect(r.attempts).toBe(2);
    expect(r.error).toBe("no answer within 150 ms");
    expect(performance.now() - t0).toBeLessThan(2_000);
  });
});

// ---------------------------------------------------------------- Parca

/** Minimal protobuf reader for the test server: field number -> list of length-delimited payloads. */
function fields(buf: Uint8Array): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  let o = 0;
  const varint = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = buf[o++]!;
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return v;
    }
  };
  while (o < buf.length) {
    const key = varint();
    if ((key & 7) !== 2) throw new Error(`unexpected wire type ${key & 7}`);
    const len = varint();
    const list = out.get(key >> 3) ?? [];
    list.push(buf.subarray(o, o + len));
    out.set(key >> 3, list);
    o += len;
  }
  return out;
}

function decodeWriteRaw(body: Uint8Array) {
  expect(body[0]).toBe(0);
  const len = new DataView(body.buffer, body.byteOffset + 1, 4).getUint32(0);
  expect(body.length).toBe(5 + len);
  const series = fields(body.subarray(5)).get(2) ?? [];
  const dec = new TextDecoder();
  return series.map((s) => {
    const f = fields(s);
    const labelSet = fields(f.get(1)![0]!).get(1) ?? [];
    const labels = Object.fromEntries(
      labelSet.map((l) => {
        const lf = fields(l);
        return [dec.decode(lf.get(1)![0]!), dec.decode(lf.get(2)![0]!)];
      }),
    );
    const samples = (f.get(2) ?? []).map((x) => fields(x).get(1)![0]!);
    return { labels, samples };
  });
}

function grpcWebTrailer(status: number, message = ""): Uint8Array {
  const text = new TextEncoder().encode(`grpc-status:${status}\r\ngrpc-message:${encodeURIComponent(message)}\r\n`);
  const frame = new Uint8Array(5 + text.length);
  frame[0] = 0x80;
  new DataView(frame.buffer).setUint32(1, text.length);
  frame.set(text, 5);
  return frame;
}

describe("uploadProfile to Parca (gRPC-Web)", () => {
  test("WriteRaw with labels and the gzipped pprof as raw_profile", async () => {
    const gz = smallProfileGz();
    let got: ReturnType<typeof decodeWriteRaw> = [];
    let contentType = "";
    let path = "";
    const server = serve(async (req) => {
      path = new URL(req.url).pathname;
      contentType = req.headers.get("content-type") ?? "";
      got = decodeWriteRaw(new Uint8Array(await req.arrayBuffer()));
      return new Response(grpcWebTrailer(0), { headers: { "content-type": "application/grpc-web+proto" } });
    });
    const r = await uploadProfile(parseUploadUrl(`parca+http://127.0.0.1:${server.port}`), gz, { ...meta, appName: "shop" }, fast);
    expect(r).toEqual({ ok: true, attempts: 1, status: 200 });
    expect(path).toBe(PARCA_WRITE_RAW_PATH);
    expect(contentType).toBe("application/grpc-web+proto");
    expect(got).toHaveLength(1);
    expect(got[0]!.labels).toEqual({ __name__: "memory", service_name: "shop", pid: "4242", comm: "leaker", reason: "oom_kill" });
    expect(got[0]!.samples).toHaveLength(1);
    expect(got[0]!.samples[0]).toEqual(gz);
    expectOurProfile(got[0]!.samples[0]!);
  });

  test("UNAVAILABLE is retried; INVALID_ARGUMENT is not", async () => {
    let calls = 0;
    const flaky = serve(() => {
      calls++;
      return calls === 1 ? new Response(null, { headers: { "grpc-status": "14", "grpc-message": "ingester%20not%20ready" } }) : new Response(grpcWebTrailer(0));
    });
    const ok = await uploadProfile(parseUploadUrl(`parca+http://127.0.0.1:${flaky.port}`), smallProfileGz(), meta, fast);
    expect(ok).toEqual({ ok: true, attempts: 2, status: 200 });

    const rejecting = serve(() => new Response(grpcWebTrailer(3, "invalid label name: 9x")));
    const bad = await uploadProfile(parseUploadUrl(`parca+http://127.0.0.1:${rejecting.port}`), smallProfileGz(), meta, fast);
    expect(bad).toEqual({ ok: false, attempts: 1, status: 200, error: "gRPC INVALID_ARGUMENT: invalid label name: 9x" });
  });

  test("a 200 without a gRPC status (not a Parca server) is a failure", async () => {
    const server = serve(() => new Response("<html>UI</html>", { headers: { "content-type": "text/html" } }));
    const r = await uploadProfile(parseUploadUrl(`parca+http://127.0.0.1:${server.port}`), smallProfileGz(), meta, fast);
    expect(r.ok).toBe(false);
    expect(r.attempts).toBe(1);
    expect(r.error).toContain("without a gRPC status");
  });
});
