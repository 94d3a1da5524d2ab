#!/usr/bin/python3
# test_trace_runs.py: routing traces end to end (docs/routes.md).
#   test_trace_runs.py SCENARIO --moe BIN --mpirun MPIEXEC --work DIR
# e2e (np 2, EP 2): `moe train` with train.trace_steps writes OUT/traces/step-N.trace; the files
#   are parsed here independently (the documented byte layout) and `moe routes --json` must give
#   the same loads and stability; `moe routes` text and --out PNGs; `moe report` on the run shows
#   the routing section with the same figures; refusals: corrupt traces exit 3, another probe
#   exit 2, a missing file exit 2, train.trace_steps = [0] exit 2.
# layout (np 4): `moe eval --trace` from one checkpoint at np 1, 2 and 4 writes the same record
#   bytes (headers differ only in the world size that wrote them).
# replay (np 2, EP 2): train.record_routing writes OUT/routing/step-N.trace for every step;
#   router.replay of that run reproduces its losses and checkpoint exactly (the router learned
#   the same: its gradient flows through the live weights), also across a resume; at np 1 and with
#   another learning rate the experts of every token stay the recorded ones while the weights
#   follow the live router; refusals: missing steps, another model, other data, expert choice,
#   a file instead of a run (exit 2), a damaged step file (exit 3).
# Exit 1 on failure, printing expected vs got.
import argparse, json, math, os, shutil, struct, subprocess, sys

TINY = {
    "name": "trace-test",
    "model": {"vocab_size": 256, "d_model": 32, "n_layers": 3, "n_heads": 4, "d_ff": 64,
              "n_experts": 4, "top_k": 2, "expert_d_ff": 32, "first_dense_layers": 1},
    "router": {"aux_loss_coef": 0.01},
    "train": {"global_batch": 8, "seq_len": 16, "steps": 6, "warmup_steps": 2, "lr": 0.01,
              "log_interval": 3, "eval_interval": 0, "eval_batches": 2,
              "checkpoint_interval": 3, "trace_steps": [3, 6], "trace_batches": 2},
    "parallel": {"ep_size": 2},
    "data": {"val_fraction": 0.1},
}
A = None
FAILS = []


def fail(msg):
    print("FAIL " + msg)
    FAILS.append(msg)


def run(args, np_=None, expect=0):
    cmd = ([A.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(np_)] if np_ else [])
    cmd += [A.moe] + args
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    print("$ %s  [exit %d]" % (" ".join(cmd[6 if np_ else 0:]), p.returncode))
    if p.returncode != expect:
        print(p.stdout[-3000:] + p.stderr[-3000:])
        fail("%s: exit code expected %d got %d" % (" ".join(args[:2]), expect, p.returncode))
    return p


def parse(path, slots=2):
    """The trace file by its documented layout: magic, u32 header length, header, records of
    32-bit little-endian words (seq, pos, token, layer, experts, weights, dropped mask)."""
    b = open(path, "rb").read()
    assert b[:8] == b"MOETRACE", path
    hn = struct.unpack("<I", b[8:12])[0]
    body = b[12 + hn:]
    words = 5 + 2 * slots
    recs = []
    for i in range(0, len(body), 4 * words):
        w = struct.unpack("<4I%di%dfI" % (slots, slots), body[i:i + 4 * words])
        recs.append({"seq": w[0], "pos": w[1], "token": w[2], "layer": w[3],
                     "experts": list(w[4:4 + slots]), "dropped": w[4 + 2 * slots]})
    return b[:12 + hn], body, recs


def near(a, b, tol=1e-7):  # JSON reals carry 9 significant digits
    return abs(a - b) <= tol * max(1.0, abs(b))


def check_traces(out):
    t3, t6 = [os.path.join(out, "traces", "step-%d.trace" % s) for s in (3, 6)]
    for t in (t3, t6):
        if not os.path.isfile(t):
            fail("missing trace " + t)
            return None
    left = [f for f in os.listdir(os.path.join(out, "traces")) if ".tmp." in f]
    if left:
        fail("temporary files left: %s" % left)
    _, _, r3 = parse(t3)
    _, _, r6 = parse(t6)
    n_tok = 2 * 8 * 16  # trace_batches x global_batch x seq_len
    if len(r3) != n_tok * 2:
        fail("records: expected %d (tokens x 2 MoE layers) got %d" % (n_tok * 2, len(r3)))
    order = [(r["seq"], r["pos"], r["layer"]) for r in r3]
    if order != sorted(order) or r3[-1]["seq"] != 15:
        fail("records not in (seq, pos, layer) order over 16 sequences")
    if [(r["seq"], r["pos"], r["token"]) for r in r3] != [(r["seq"], r["pos"], r["token"]) for r in r6]:
        fail("the two traces do not hold the same probe tokens")
    # JSON of moe routes against loads and stability computed here from the bytes
    p = run(["routes", t3, t6, "--json"])
    j = json.loads(p.stdout)
    for ti, recs in ((0, r3), (1, r6)):
        for lay in j["traces"][ti]["layers"]:
            l = lay["layer"]
            load = [0] * 4
            for r in recs:
                if r["layer"] == l:
                    for e in r["experts"]:
                        load[e] += 1
            if lay["load"] != load:
                fail("trace %d layer %d load %s, computed from the file %s" % (ti, l, lay["load"], load))
            if lay["pairs"] != 2 * n_tok or sum(lay["coactivation"][e][e] for e in range(4)) != 2 * n_tok:
                fail("layer %d: pairs %d / co-activation diagonal != tokens x k" % (l, lay["pairs"]))
            if not (0 <= lay["mi_bits"] <= lay["entropy_bits"] + 1e-9 <= 2 + 1e-9):
                fail("layer %d: 0 <= MI %.4f <= entropy %.4f <= log2 4" % (l, lay["mi_bits"], lay["entropy_bits"]))
            q = [c / (2.0 * n_tok) for c in load]
            h = -sum(x * math.log2(x) for x in q if x > 0)
            if not near(lay["entropy_bits"], h):
                fail("layer %d entropy %.9f vs %.9f from the file" % (l, lay["entropy_bits"], h))
    st = j["stability"][0]
    for l in range(2):
        a = [set(r["experts"]) for r in r3 if r["layer"] == l]
        b = [set(r["experts"]) for r in r6 if r["layer"] == l]
        changed = sum(x != y for x, y in zip(a, b)) / len(a)
        jac = sum(len(x & y) / len(x | y) for x, y in zip(a, b)) / len(a)
        if not (near(st["changed"][l], changed) and near(st["jaccard"][l], jac)):
            fail("stability layer %d: %s %s vs %.6f %.6f from the files"
                 % (l, st["changed"][l], st["jaccard"][l], changed, jac))
    return t3, t6, j


def e2e():
    out = os.path.join(A.work, "e2e")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(A.work, exist_ok=True)
    cfg = os.path.join(A.work, "trace-e2e.json")
    with open(cfg, "w") as f:
        json.dump(TINY, f)
    p = run(["train", cfg, "--set", "out_dir=" + out], np_=2)
    if "routing trace: " + os.path.join(out, "traces", "step-3.trace") not in p.stdout:
        fail("moe train did not say where the step-3 trace went")
    got = check_traces(out)
    if not got:
        return
    t3, t6, j = got
    p = run(["routes", t3, t6])
    for want in ("routing stability", "per layer", "co-activation", "specialization", "step 6"):
        if want not in p.stdout:
            fail("moe routes text lacks '%s'" % want)
    png = os.path.join(A.work, "e2e-png")
    shutil.rmtree(png, ignore_errors=True)
    p = run(["routes", t6, "--out", png])
    if shutil.which("gnuplot"):
        for name in ("step-6-load.png", "step-6-coact-L1.png", "step-6-coact-L2.png"):
            f = os.path.join(png, name)
            if not os.path.isfile(f) or open(f, "rb").read(8) != b"\x89PNG\r\n\x1a\n":
                fail("no PNG " + f)
    # moe report on the run (its one-run report) and on the run beside a copy of it (the report
    # of several runs, with index.html): the routing section with the newest trace's figures
    rep1 = os.path.join(A.work, "e2e-report1")
    shutil.rmtree(rep1, ignore_errors=True)
    run(["report", out, "--out", rep1])
    md1 = open(os.path.join(rep1, "report.md")).read()
    rep = os.path.join(A.work, "e2e-report")
    shutil.rmtree(rep, ignore_errors=True)
    twin = os.path.join(A.work, "e2e-twin")
    shutil.rmtree(twin, ignore_errors=True)
    shutil.copytree(out, twin)
    run(["report", out, twin, "--out", rep])
    md = open(os.path.join(rep, "report.md")).read()
    lay0 = j["traces"][1]["layers"][0]
    row = "| 0 | 1 | %.3f | %.3f | %.3f |" % (lay0["max_over_mean"], lay0["entropy_bits"], lay0["mi_bits"])
    stab = "| 0 | 1 | %.1f%% | %.4f |" % (100 * j["stability"][0]["changed"][0], j["stability"][0]["jaccard"][0])
    for want in ("## Routing", "### Routing: e2e", "2 traces; the newest, step 6", row,
                 "Routing stability from step 3 to step 6", stab):
        if want not in md:
            fail("report.md lacks '%s'" % want)
        if want not in md1:
            fail("the one-run report.md lacks '%s'" % want)
    if "### Routing: e2e-twin" not in md:
        fail("report.md lacks the second run's routing section")
    html = open(os.path.join(rep, "index.html")).read()
    for want in ("<h2>Routing</h2>", "### Routing: e2e", row, stab):
        if want not in html:
            fail("index.html lacks '%s'" % want)
    # refusals
    bad = os.path.join(A.work, "bad.trace")
    data = open(t6, "rb").read()
    open(bad, "wb").write(data[:-10])
    p = run(["routes", bad], expect=3)
    if "truncated" not in p.stderr:
        fail("a truncated trace: message lacks 'truncated': " + p.stderr)
    open(bad, "wb").write(b"X" + data[1:])
    p = run(["routes", t3, bad], expect=3)
    if "wrong magic" not in p.stderr:
        fail("a trace with a wrong magic: " + p.stderr)
    other = os.path.join(A.work, "other-probe.trace")
    run(["eval", "--checkpoint", out, "--trace", other, "--trace-batches", "1"], np_=2)
    p = run(["routes", t6, other], expect=2)
    if "different probes" not in p.stderr:
        fail("another probe: message lacks 'different probes': " + p.stderr)
    run(["routes", os.path.join(A.work, "no-such.trace")], expect=2)
    # Capacity drops and expert choice, recorded from the same checkpoint by moe eval --trace.
    cap = os.path.join(A.work, "capacity.trace")
    run(["eval", "--checkpoint", out, "--trace", cap, "--set", "router.capacity_factor=0.5"], np_=2)
    _, _, rc = parse(cap)
    drops = sum(bin(r["dropped"]).count("1") for r in rc)
    jc = json.loads(run(["routes", cap, "--json"]).stdout)["traces"][0]["layers"]
    if drops == 0 or sum(l["dropped"] for l in jc) != drops:
        fail("capacity 0.5: %d dropped pairs in the file, moe routes says %s"
             % (drops, [l["dropped"] for l in jc]))
    for l in jc:
        if [a - b for a, b in zip(l["load"], l["kept"])] != [
                sum(1 for r in rc if r["layer"] == l["layer"]
                    for j, e in enumerate(r["experts"]) if e == x and r["dropped"] >> j & 1)
                for x in range(4)]:
            fail("capacity: load - kept per expert differs from the file's dropped pairs")
    ec = os.path.join(A.work, "expert-choice.trace")
    run(["eval", "--checkpoint", out, "--trace", ec, "--set", "router.strategy=expert_choice"], np_=2)
    _, _, re_ = parse(ec, slots=4)
    je = json.loads(run(["routes", ec, "--json"]).stdout)["traces"][0]
    load = [0] * 4
    for r in re_:
        ex = [e for e in r["experts"] if e >= 0]
        if len(set(ex)) != len(ex) or ex != sorted(ex) or r["experts"][len(ex):] != [-1] * (4 - len(ex)):
            fail("expert choice record: experts %s not increasing then -1" % r["experts"])
            break
        if r["layer"] == 0:
            for e in ex:
                load[e] += 1
    # each expert takes C = S*k/E = 8 tokens of every sequence: 16 sequences x 8 per expert
    if je["strategy"] != "expert_choice" or je["layers"][0]["load"] != load or load != [128] * 4:
        fail("expert choice: loads %s (file %s), want 128 each" % (je["layers"][0]["load"], load))
    run(["train", cfg, "--set", "out_dir=" + out + "-bad", "--set", "train.trace_steps=[0]"],
        np_=2, expect=2)


def layout():
    out = os.path.join(A.work, "layout")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(A.work, exist_ok=True)
    cfg = os.path.join(A.work, "trace-layout.json")
    c = json.loads(json.dumps(TINY))
    c["train"]["steps"], c["train"]["trace_steps"] = 3, []
    with open(cfg, "w") as f:
        json.dump(c, f)
    run(["train", cfg, "--set", "out_dir=" + out], np_=2)
    bodies = {}
    for np_ in (1, 2, 4):
        t = os.path.join(A.work, "layout-np%d.trace" % np_)
        run(["eval", "--checkpoint", out, "--batches", "2", "--trace", t], np_=np_)
        if not os.path.isfile(t):
            fail("no trace at np %d" % np_)
            return
        head, body, recs = parse(t)
        bodies[np_] = body
        if len(recs) != 2 * 8 * 16 * 2:
            fail("np %d: %d records" % (np_, len(recs)))
    for np_ in (2, 4):
        if bodies[np_] != bodies[1]:
            diff = sum(bodies[np_][i:i + 4] != bodies[1][i:i + 4] for i in range(0, len(bodies[1]), 4))
            fail("np %d: records differ from np 1 in %d of %d words" % (np_, diff, len(bodies[1]) // 4))
    print("records identical at np 1, 2, 4 (%d bytes)" % len(bodies[1]))


def losses(out):
    return [(r["step"], r["loss"], r.get("val_loss")) for r in
            (json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")))]


def routing(out, step):
    return parse(os.path.join(out, "routing", "step-%d.trace" % step))


def replay():
    os.makedirs(A.work, exist_ok=True)
    cfg = os.path.join(A.work, "trace-replay.json")
    c = json.loads(json.dumps(TINY))
    c["train"].update({"steps": 8, "trace_steps": [], "checkpoint_interval": 4,
                       "eval_interval": 4, "record_routing": True, "log_interval": 4})
    with open(cfg, "w") as f:
        json.dump(c, f)
    outs = {}
    for k in ("rec", "same", "resumed", "np1", "lr", "bad"):
        outs[k] = os.path.join(A.work, "replay-" + k)
        shutil.rmtree(outs[k], ignore_errors=True)
    rec = outs["rec"]
    run(["train", cfg, "--set", "out_dir=" + rec], np_=2)
    for s in range(1, 9):
        f = os.path.join(rec, "routing", "step-%d.trace" % s)
        if not os.path.isfile(f):
            fail("no routing log file " + f)
            return
    head, body, r1 = routing(rec, 1)
    if len(r1) != 8 * 16 * 2 or b"training batch of step 1" not in head:
        fail("step-1.trace: %d records (want 8 x 16 x 2), probe named in the header: %s"
             % (len(r1), b"training batch of step 1" in head))
    # The run replayed at its own layout: the same losses and parameters, bit for bit.
    rp = ["--set", "router.replay=" + rec]
    run(["train", cfg, "--set", "out_dir=" + outs["same"]] + rp, np_=2)
    if losses(outs["same"]) != losses(rec):
        fail("replay of its own recording: losses differ\n  %s\n  %s"
             % (losses(rec), losses(outs["same"])))
    ckcmp_exact(os.path.join(rec, "checkpoints", "step_00000008"),
                os.path.join(outs["same"], "checkpoints", "step_00000008"))
    for s in (1, 5, 8):
        if routing(outs["same"], s)[1] != routing(rec, s)[1]:
            fail("replay: the routing of step %d differs from the recording" % s)
    # Resumed half way: steps 5..8 replayed after the checkpoint of step 4.
    res = outs["resumed"]
    shutil.copytree(outs["same"], res)
    shutil.rmtree(os.path.join(res, "checkpoints", "step_00000008"))
    with open(os.path.join(res, "checkpoints", "LATEST"), "w") as f:
        f.write("step_00000004\n")
    run(["train", cfg, "--set", "out_dir=" + res, "--resume", "latest"] + rp, np_=2)
    if losses(res) != losses(rec):
        fail("replay resumed at step 4: losses differ\n  %s\n  %s" % (losses(rec), losses(res)))
    # Another layout, another learning rate: the experts stay the recorded ones, the weights
    # are the live router's.
    run(["train", cfg, "--set", "out_dir=" + outs["np1"], "--set", "parallel.ep_size=1"] + rp,
        np_=1)
    run(["train", cfg, "--set", "out_dir=" + outs["lr"], "--set", "train.lr=0.003"] + rp, np_=2)
    for k in ("np1", "lr"):
        for s in (1, 8):
            got, want = routing(outs[k], s)[2], routing(rec, s)[2]
            if [r["experts"] for r in got] != [r["experts"] for r in want]:
                fail("replay (%s), step %d: experts differ from the recording" % (k, s))
    w8 = [struct.unpack("<%df" % (len(routing(rec, 8)[1]) // 4), routing(k, 8)[1])
          for k in (rec, outs["lr"])]
    if w8[0] == w8[1]:
        fail("replay with another lr: step 8's weights equal the recording's (want the live ones)")
    la, ln = losses(rec), losses(outs["np1"])
    if any(abs(a[1] - b[1]) > 1e-3 * abs(a[1]) for a, b in zip(la, ln)):
        fail("replay at np 1: losses drift from np 2's recording\n  %s\n  %s" % (la, ln))
    if losses(outs["lr"])[-1][1] == la[-1][1]:
        fail("replay with another lr: the same loss at step 8")
    # Refusals, before any step.
    bad = outs["bad"]
    for extra, code, want in (
            (["--set", "train.steps=12"], 2, "step-9.trace"),
            (["--set", "model.n_experts=8"], 2, "8 experts"),
            (["--set", "model.expert_d_ff=48"], 2, "another shape"),
            (["--set", "train.seed=7"], 2, "other data"),
            (["--set", "router.strategy=expert_choice"], 2, "token_choice"),
            (["--set", "router.replay=" + os.path.join(rec, "metrics.jsonl")], 2,
             "not a directory")):
        shutil.rmtree(bad, ignore_errors=True)
        p = run(["train", cfg, "--set", "out_dir=" + bad] + rp + extra, np_=2, expect=code)
        if want not in p.stderr:
            fail("refusal %s: message lacks '%s': %s" % (extra, want, p.stderr[-600:]))
    dam = os.path.join(A.work, "replay-damaged")
    shutil.rmtree(dam, ignore_errors=True)
    shutil.copytree(os.path.join(rec, "routing"), dam)
    f3 = os.path.join(dam, "step-3.trace")
    data = open(f3, "rb").read()
    open(f3, "wb").write(data[:-40])
    shutil.rmtree(bad, ignore_errors=True)
    p = run(["train", cfg, "--set", "out_dir=" + bad, "--set", "router.replay=" + dam], np_=2,
            expect=3)
    if "step-3.trace" not in p.stderr or "truncated" not in p.stderr:
        fail("a damaged step file: message lacks the file or 'truncated': " + p.stderr[-600:])


def ckcmp_exact(a, b):
    p = subprocess.run([A.ckcmp, a, b, "--exact"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout)
        fail("checkpoints %s and %s differ" % (a, b))


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["e2e", "layout", "replay"])
    ap.add_argument("--moe", required=True)
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--ckcmp", help="test_train_ckcmp (replay)")
    A = ap.parse_args()
    {"e2e": e2e, "layout": layout, "replay": replay}[A.scenario]()
    if FAILS:
        print("%d failure(s)" % len(FAILS))
        return 1
    print("test_trace_runs %s: ok" % A.scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
