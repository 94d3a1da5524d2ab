#!/usr/bin/python3
# test_train_xauto.py: parallel.exchange = auto end to end (docs/expert-parallel.md, "auto").
# Runs `moe train` on test_train_runs.py's tiny model with fake nodes (MOE_TRAIN_TEST_NODE_SIZE:
# every N consecutive ranks form a node, so EP groups span nodes on one machine) and checks:
#   - the trial: 2 lead steps, then every candidate of the layout runs 1 + 2 steps in order, then
#     again in reverse order, recorded per step;
#     the record of the trial's last step carries every candidate's median, one marked chosen;
#     the following steps run the choice; the header and the progress output say so;
#   - the trial's steps train like the plain exchange: losses within 1e-4 relative of a
#     parallel.exchange = fixed run (the candidates differ by float summation order only);
#   - the choice is recorded in the checkpoint and a resumed run keeps it: its records say
#     "resumed" with the same setting, and its losses and final checkpoint equal the
#     uninterrupted run's bit for bit;
#   - no trial where there is nothing to choose or the user chose: EP groups inside one node,
#     parallel.dedup given, parallel.exchange = fixed;
#   - two fake nodes whose ranks share CPU 0 (taskset) get a warning naming both; ranks on their
#     own cores get none.
#   test_train_xauto.py --np N --moe BIN --ckcmp BIN --mpirun MPIEXEC --work DIR
import argparse, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_runs as T  # noqa: E402  (helpers: run, metrics, ckpt, ckcmp, close, fail)

LEAD, ROUNDS, PER = 2, 2, 3  # MOE_XAUTO_LEAD, _ROUNDS, _WARM + _TIMED (exchange-auto.h)


def schedule(cands):
    """The setting of every trial step: the lead on flat, then the candidates in order and in
    reverse, PER steps each."""
    seq = ["flat"] * LEAD
    for r in range(ROUNDS):
        for c in (cands if r % 2 == 0 else cands[::-1]):
            seq += [c] * PER
    return seq


def check_trial(recs, cands, steps):
    seq = schedule(cands)
    n = len(seq)
    for s, name in enumerate(seq, 1):
        r = recs.get(s, {})
        if r.get("exchange_setting") != name or r.get("exchange_state") != "trying":
            T.fail("step %d: expected the trial running %s, got %s / %s"
                   % (s, name, r.get("exchange_setting"), r.get("exchange_state")))
    last = recs.get(n, {})
    trial = last.get("exchange_trial") or []
    if [t.get("setting") for t in trial] != cands:
        T.fail("step %d: exchange_trial should list %s, got %s" % (n, cands, trial))
        return None
    chosen = [t["setting"] for t in trial if t.get("chosen")]
    if len(chosen) != 1 or any(not t.get("median_step_seconds", 0) > 0 for t in trial):
        T.fail("exchange_trial: one chosen and every median > 0 expected: %s" % trial)
        return None
    med = {t["setting"]: t["median_step_seconds"] for t in trial}
    best = min(med, key=med.get)
    # flat stays unless the best is faster by more than 2 %
    expect = best if med[best] < 0.98 * med["flat"] else "flat"
    if chosen[0] != expect:
        T.fail("chose %s, but the medians %s make it %s" % (chosen[0], med, expect))
    for s in range(n + 1, steps + 1):
        r = recs.get(s, {})
        if r.get("exchange_setting") != chosen[0] or r.get("exchange_state") != "chosen":
            T.fail("step %d: expected the choice %s, got %s / %s"
                   % (s, chosen[0], r.get("exchange_setting"), r.get("exchange_state")))
            break
    return chosen[0]


def scenario(np_, node, ep, cands):
    steps = len(schedule(cands)) + 6
    ci = len(schedule(cands)) + 2  # a checkpoint after the trial, resumed from below
    cfg = T.write_config("xauto", T.cfg_with(steps=steps, log_interval=5, eval_interval=0,
                                             checkpoint_interval=ci, keep_checkpoints=5))
    env = {"MOE_TRAIN_TEST_NODE_SIZE": str(node)}
    sets = ["parallel.ep_size=%d" % ep]
    out = os.path.join(T.A.work, "auto-np%d" % np_)
    shutil.rmtree(out, ignore_errors=True)
    p = T.run(np_, cfg, out, sets, env=env)
    want = "exchange auto: timing %s on the first %d steps" % (", ".join(cands), len(schedule(cands)))
    if want not in p.stdout:
        T.fail("header should say '%s': %s" % (want, p.stdout[-1500:]))
    if "bound to overlapping CPUs" in p.stdout:
        T.fail("ranks bound to their own cores were reported as sharing: %s" % p.stdout[-1500:])
    recs = T.metrics(out)
    chosen = check_trial(recs, cands, steps)
    if chosen and ("exchange auto chose %s" % chosen) not in p.stdout:
        T.fail("no 'exchange auto chose %s' line in the output" % chosen)
    # The same run with the plain exchange fixed: the trial's steps train alike.
    ref = out + "-fixed"
    shutil.rmtree(ref, ignore_errors=True)
    p = T.run(np_, cfg, ref, sets + ["parallel.exchange=fixed"], env=env)
    if "exchange flat (parallel.exchange = fixed)" not in p.stdout:
        T.fail("a fixed run should say 'exchange flat (parallel.exchange = fixed)'")
    rr = T.metrics(ref)
    for s in range(1, steps + 1):
        if rr.get(s, {}).get("exchange_state") != "fixed":
            T.fail("fixed run, step %d: state %s" % (s, rr.get(s, {}).get("exchange_state")))
            break
        if not T.close(recs[s]["loss"], rr[s]["loss"], 1e-4):
            T.fail("step %d: auto loss %.9g vs fixed flat %.9g (beyond 1e-4 relative)"
                   % (s, recs[s]["loss"], rr[s]["loss"]))
    # Resume after the trial: the choice comes from the checkpoint; bit-identical continuation.
    res = out + "-resumed"
    shutil.rmtree(res, ignore_errors=True)
    p = T.run(np_, cfg, res, sets, env=env, resume=T.ckpt(out, ci))
    if chosen and ("exchange %s (auto, the choice recorded in the checkpoint)" % chosen) \
            not in p.stdout:
        T.fail("the resumed run should keep %s from the checkpoint: %s" % (chosen, p.stdout[-1500:]))
    rs = T.metrics(res)
    for s in range(ci + 1, steps + 1):
        r = rs.get(s, {})
        if r.get("exchange_setting") != chosen or r.get("exchange_state") != "resumed":
            T.fail("resumed, step %d: expected %s / resumed, got %s / %s"
                   % (s, chosen, r.get("exchange_setting"), r.get("exchange_state")))
        if r.get("loss") != recs[s]["loss"]:
            T.fail("resumed, step %d: loss %r != uninterrupted %r" % (s, r.get("loss"),
                                                                      recs[s]["loss"]))
    T.ckcmp(T.ckpt(out, steps), T.ckpt(res, steps), "--exact")
    return cfg, env, sets


def no_trial(np_, cfg, env, sets):
    cases = [
        ("one-node", {}, [], "exchange flat (no EP group spans nodes"),
        ("dedup-given", env, ["parallel.dedup=rank"], "exchange dedup-rank (set in the config"),
    ]
    for name, e, extra, line in cases:
        out = os.path.join(T.A.work, "notrial-%s" % name)
        shutil.rmtree(out, ignore_errors=True)
        p = T.run(np_, cfg, out, sets + extra, env=e)
        if line not in p.stdout:
            T.fail("%s: header should contain '%s': %s" % (name, line, p.stdout[-1200:]))
        states = {r.get("exchange_state") for r in T.metrics(out).values()}
        if states != {"fixed"}:
            T.fail("%s: every record should say fixed, got %s" % (name, states))


def shared_core(cfg, env):
    """Two fake nodes of one machine whose ranks share CPU 0 (the virtual cluster's old trap):
    `moe train` warns, naming both ranks and the CPUs."""
    import subprocess
    out = os.path.join(T.A.work, "shared-core")
    shutil.rmtree(out, ignore_errors=True)
    args = ["taskset", "-c", "0", T.A.mpirun, "--allow-run-as-root", "--oversubscribe",
            "--bind-to", "none", "-np", "2", T.A.moe, "train", cfg, "--set", "out_dir=" + out,
            "--set", "parallel.ep_size=2", "--set", "train.steps=4", "--set",
            "train.warmup_steps=1"]
    e = dict(os.environ)
    e.update(env)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e)
    print("$ taskset -c 0 mpirun --bind-to none -np 2 moe train ...  [exit %d]" % p.returncode)
    want = "warning: ranks 0 ("
    if p.returncode != 0 or want not in p.stdout or "bound to overlapping CPUs (0 and 0)" not in p.stdout:
        T.fail("two nodes sharing CPU 0: expected exit 0 and '%s ... bound to overlapping CPUs (0 and 0)': %s"
               % (want, p.stdout[-1500:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--np", type=int, required=True)
    ap.add_argument("--moe", required=True)
    ap.add_argument("--ckcmp", required=True)
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--work", required=True)
    T.A = ap.parse_args()
    T.A.work = os.path.abspath(os.path.join(T.A.work, "xauto-np%d" % T.A.np))
    os.makedirs(T.A.work, exist_ok=True)
    if T.A.np == 2:  # two one-rank nodes, EP 2 across them
        cfg, env, sets = scenario(2, 1, 2, ["flat", "chunks4", "dedup-rank"])
        no_trial(2, cfg, env, sets)
        shared_core(cfg, env)
    else:  # two nodes of two ranks, EP 4 across them: hierarchical and node dedup too
        scenario(4, 2, 4, ["flat", "chunks4", "dedup-rank", "hier", "dedup-node"])
    if T.FAILS:
        print("test_train_xauto np%d: %d check(s) FAILED" % (T.A.np, len(T.FAILS)))
        return 1
    print("test_train_xauto np%d: all checks passed" % T.A.np)
    return 0


if __name__ == "__main__":
    sys.exit(main())
