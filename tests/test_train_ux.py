#!/usr/bin/python3
# test_train_ux.py: `moe train` as a new user meets it (issue 17), each scenario under mpirun on
# the tiny model of test_train_runs.py (its helpers are reused):
#   dryrun  --dry-run: layout, memory per rank and every check printed, exit 0, nothing written to
#           out_dir (a missing out_dir stays missing, an existing one keeps its files and times);
#           refusals: an earlier run's checkpoints, a bad layout, too much memory; --resume
#           latest: the checkpoint found and verified, the schedule change named.
#   edges   a setup error is printed once and before anything else; --set train.steps below the
#           file's warmup_steps names the override and the fix; raising train.steps on resume
#           prints both schedules and the lr jump; checkpoint directories follow the umask.
#   test_train_ux.py SCENARIO --moe BIN --ckcmp BIN --mpirun MPIEXEC --work DIR
import os, re, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_runs as T  # noqa: E402

fail = T.fail


def snapshot(d):
    """Every path under d with its size and mtime (None: d does not exist)."""
    if not os.path.exists(d):
        return None
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.stat(p)
            out[os.path.relpath(p, d)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def expect_in(what, text, *words):
    for w in words:
        if w not in text:
            fail("%s: output lacks %r:\n%s" % (what, w, text[-1500:]))


def dryrun():
    cfg = T.write_config("dry", T.cfg_with())
    out = os.path.join(T.A.work, "dry-missing")
    shutil.rmtree(out, ignore_errors=True)
    p = T.run(2, cfg, out, ["parallel.ep_size=2"], extra=["--dry-run"])
    expect_in("dry-run fresh", p.stdout, "moe train --dry-run: train-test",
              "layout: world 2 = ep 2 x edp 1", "rank 0: node 0, EP group 0 (ep_rank 0)",
              "rank 1: node 0, EP group 0 (ep_rank 1), edp_rank 0, experts 2..3",
              "memory per rank:", "would be created", "default corpus would be generated",
              "all checks passed", "nothing written")
    if not re.search(r"memory per rank: [0-9.]+ MiB = [0-9.]+ MiB parameters", p.stdout):
        fail("dry-run: no memory figures:\n" + p.stdout)
    if os.path.exists(out):
        fail("dry-run created out_dir %s: %s" % (out, os.listdir(out)))
    # A real run, then dry runs against it: nothing of it may change.
    run_dir = os.path.join(T.A.work, "dry-run-dir")
    shutil.rmtree(run_dir, ignore_errors=True)
    T.run(2, cfg, run_dir, ["train.steps=10"])
    before = snapshot(run_dir)
    p = T.run(2, cfg, run_dir, ["train.steps=10"], extra=["--dry-run"], expect=2)
    expect_in("dry-run over checkpoints", p.stdout, "already holds checkpoints", "--resume latest")
    p = T.run(2, cfg, run_dir, ["train.steps=20"], resume="latest", extra=["--dry-run"])
    expect_in("dry-run --resume", p.stdout, "would resume from", "at step 10", "files verified",
              "the learning-rate schedule changed on resume", "over 10 steps", "over 20 steps",
              "default-corpus.txt: ", "training tokens", "all checks passed")
    p = T.run(2, cfg, run_dir, ["parallel.ep_size=3"], extra=["--dry-run"], expect=2)
    expect_in("dry-run bad layout", p.stdout, "ep")
    p = T.run(1, cfg, run_dir, ["model.d_model=16384", "model.d_ff=65536", "model.n_heads=16"],
              extra=["--dry-run"], expect=2)
    expect_in("dry-run memory", p.stdout, "MiB per rank, more than the machine")
    if snapshot(run_dir) != before:
        fail("dry runs changed %s" % run_dir)
    print("ok   dryrun" if not T.FAILS else "dryrun: see above")


def edges():
    cfg = T.write_config("edges", T.cfg_with())
    out = os.path.join(T.A.work, "edges")
    shutil.rmtree(out, ignore_errors=True)
    T.run(2, cfg, out, ["train.steps=10"])
    # 1. A fresh run over that run's checkpoints: the error once, before any other line.
    p = T.run(2, cfg, out, ["train.steps=10"], expect=2)
    lines = [l for l in p.stdout.splitlines() if l.strip() and not l.startswith("---")]
    if not lines or "already holds checkpoints" not in lines[0]:
        fail("setup error is not the first line:\n" + p.stdout)
    if p.stdout.count("already holds checkpoints") != 1:
        fail("setup error printed %d times:\n%s" % (p.stdout.count("already holds"), p.stdout))
    if "default corpus" in p.stdout:
        fail("the corpus line printed with a setup error:\n" + p.stdout)
    # 2. --set train.steps below the file's warmup_steps (4): the override is named, and the fix.
    p = T.run(2, cfg, os.path.join(T.A.work, "edges-x"), ["train.steps=3"], expect=2)
    expect_in("steps override", p.stdout, "--set train.steps=3 conflicts with",
              "the file's train.warmup_steps", "--set train.warmup_steps=")
    if p.stdout.count("conflicts with") != 1:
        fail("conflict printed %d times" % p.stdout.count("conflicts with"))
    # 3. Raising train.steps on resume: both schedules and the lr of the next step.
    p = T.run(2, cfg, out, ["train.steps=20"], resume="latest")
    expect_in("resume schedule", p.stdout, "the learning-rate schedule changed on resume",
              "checkpoint: cosine, lr 0.003 -> min_lr 0.0003 over 10 steps, warmup 4",
              "now:        cosine, lr 0.003 -> min_lr 0.0003 over 20 steps, warmup 4",
              "step 11 runs at lr")
    if p.stdout.find("schedule changed") > p.stdout.find("step    "):
        fail("the schedule note comes after the first progress line")
    p = T.run(2, cfg, out, ["train.steps=30"], resume="latest", extra=["--dry-run"])
    p2 = T.run(2, cfg, out, ["train.steps=20", "train.seed=1234"], resume="latest")
    if "schedule changed" in p2.stdout:
        fail("schedule note without a change:\n" + p2.stdout)
    # 4. Checkpoint directories follow the umask (mkdtemp alone makes them 0700).
    for mask, want in ((0o022, 0o755), (0o027, 0o750)):
        d = os.path.join(T.A.work, "edges-umask-%o" % mask)
        shutil.rmtree(d, ignore_errors=True)
        old = os.umask(mask)
        try:
            T.run(1, cfg, d, ["train.steps=2", "train.warmup_steps=1"])
        finally:
            os.umask(old)
        step = T.ckpt(d, 2)
        got = os.stat(step).st_mode & 0o777 if os.path.isdir(step) else None
        if got != want:
            fail("umask %03o: checkpoint directory mode %s, expected %03o" %
                 (mask, oct(got) if got is not None else "missing", want))
    print("ok   edges" if not T.FAILS else "edges: see above")


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["dryrun", "edges"])
    ap.add_argument("--moe", required=True)
    ap.add_argument("--ckcmp", required=True)
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--work", required=True)
    T.A = ap.parse_args()
    T.A.work = os.path.abspath(os.path.join(T.A.work, "ux-" + T.A.scenario))
    os.makedirs(T.A.work, exist_ok=True)
    globals()[T.A.scenario]()
    if T.FAILS:
        print("test_train_ux %s: %d check(s) FAILED" % (T.A.scenario, len(T.FAILS)))
        return 1
    print("test_train_ux %s: all checks passed" % T.A.scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
