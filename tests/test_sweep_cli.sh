#!/bin/bash
# test_sweep_cli.sh: `moe sweep` without training. Sweep-file errors (unknown field, bad override
# path or value, empty grid, duplicate or bad names, missing base, unknown --only) exit 2 with a
# message naming the problem; --dry-run lists every run with its command line, creates nothing,
# and generates the dense baseline and the experts axis with the right shapes: the FFN matmul
# FLOPs of the dense baseline equal the MoE model's (checked with `moe params --json`, an
# independent accounting), and active parameters without the router stay fixed along the axis.
. "$(dirname "$0")/test_sweep_lib.sh"
PY=/usr/bin/python3
cd "$WORK" || exit 1
tiny_base base.json 6

# expect_error NAME EXPECTED_TEXT... : the sweep file $WORK/NAME.json must exit 2 naming each text
expect_error() {
    local f=$1
    shift
    "$MOE_BIN" sweep "$f.json" --dry-run >"$f.out" 2>"$f.err"
    local rc=$?
    [ $rc = 2 ] || fail "$f: expected exit 2, got $rc: $(cat "$f.err")"
    for t in "$@"; do
        grep -qF -- "$t" "$f.err" || fail "$f: expected the message to mention '$t', got: $(cat "$f.err")"
    done
    say "$f: exit 2: $(head -c 300 "$f.err" | tr '\n' ' ')"
}

echo '{"base_file": "base.json", "pointz": [{"name": "a"}]}' >unknown.json
expect_error unknown "pointz" "points"
echo '{"base_file": "base.json", "points": [{"name": "a", "set": ["router.aux_loss_coeff=0.1"]}]}' >badpath.json
expect_error badpath "point 'a'" "aux_loss_coeff" "aux_loss_coef"
echo '{"base_file": "base.json", "points": [{"name": "a", "set": ["model.top_k=9"]}]}' >badvalue.json
expect_error badvalue "point 'a'" "top_k = 9"
echo '{"base_file": "base.json", "points": []}' >empty.json
expect_error empty "grid is empty"
echo '{"base_file": "base.json", "points": [{"name": "a"}, {"name": "a"}]}' >dup.json
expect_error dup "a-s"
echo '{"base_file": "base.json", "points": [{"name": "a/b"}]}' >badname.json
expect_error badname 'points[0].name = "a/b"'
echo '{"base_file": "nope.json", "points": [{"name": "a"}]}' >nobase.json
expect_error nobase "nope.json" "does not exist"
echo '{"base_file": "base.json", "points": [{"name": "dense"}], "dense_baseline": true}' >clash.json
expect_error clash "dense-s"
echo '{"base_file": "base.json", "experts_axis": [4, 0]}' >axis.json
expect_error axis "experts_axis[1] = 0"
echo '{"base_file": "base.json", "points": [{"name": "a"}]}' >ok.json
"$MOE_BIN" sweep ok.json --dry-run --only zzz >only.out 2>only.err
[ $? = 2 ] && grep -q "zzz: no such point" only.err || fail "--only zzz: expected exit 2, got: $(cat only.err)"
"$MOE_BIN" sweep --help | grep -q "usage: moe sweep" || fail "moe sweep --help"

# ------------------------------------------------ --dry-run
cat >grid.json <<JSON
{
  "name": "grid",
  "base_file": "base.json",
  "launch": {"np": 2, "mpirun": "mpirun", "extra_args": ["--bind-to", "none"]},
  "out_dir": "$WORK/out",
  "set": ["train.steps=4"],
  "points": [{"name": "noaux", "set": ["router.aux_loss_coef=0"]},
             {"name": "z", "set": ["router.z_loss_coef=0.001"]}],
  "dense_baseline": true,
  "experts_axis": [1, 2, 8],
  "seeds": [3, 4]
}
JSON
"$MOE_BIN" sweep grid.json --dry-run >dry.out 2>dry.err || fail "dry run: exit $?: $(cat dry.err)"
[ -e "$WORK/out" ] && fail "--dry-run created $WORK/out"
runs=$(grep -oE '^\[[0-9]+/[0-9]+\] [^ ]+' dry.out | awk '{print $2}' | tr '\n' ' ')
want="noaux-s3 noaux-s4 z-s3 z-s4 dense-s3 dense-s4 experts-1-s3 experts-1-s4 experts-2-s3 experts-2-s4 experts-8-s3 experts-8-s4 "
[ "$runs" = "$want" ] || fail "dry run: expected runs '$want', got '$runs'"
say "dry run lists: $runs"
# the command line of each run: launcher, extra args, this binary, the base, the overrides
cmd_of() { grep -A3 "\] $1 " dry.out | grep -m1 '^  \$ ' | sed 's/^  \$ //'; }
sets_of() { cmd_of "$1" | grep -oE -- '--set [^ ]+' | sed 's/^--set //'; }
c=$(cmd_of noaux-s3)
case $c in
    "mpirun -np 2 --bind-to none $MOE_BIN train $WORK/base.json --set train.steps=4 --set router.aux_loss_coef=0 --set train.seed=3 --set out_dir=$WORK/out/runs/noaux-s3") ;;
    *) fail "noaux-s3: unexpected command line: $c" ;;
esac
# dense: L·F' = L_moe·(K·Fe + Ns·Fs) + L_dense·F, here (1·(2·40 + 1·24) + 1·96) / 2 = 100
L_moe=1; L_dense=1; K=2; Fe=40; Ns=1; Fs=24; F=96
Fd=$(( (L_moe * (K * Fe + Ns * Fs) + L_dense * F + (L_moe + L_dense) / 2) / (L_moe + L_dense) ))
sets_of dense-s3 | grep -qx "model.d_ff=$Fd" || fail "dense-s3: expected model.d_ff=$Fd in: $(sets_of dense-s3 | tr '\n' ' ')"
sets_of dense-s3 | grep -qx "model.n_experts=0" || fail "dense-s3: expected model.n_experts=0"
sets_of dense-s3 | grep -qx "parallel.ep_size=1" || fail "dense-s3: expected parallel.ep_size=1 (a dense model has no EP)"
# FFN FLOPs by the params module: dense_ffn matmul of the dense run == routed + shared + dense FFN
# matmul entries one token uses in the MoE base (active figures)
ffn() { # CONFIG SETS... → FFN matmul entries per token
    local cfg=$1
    shift
    local a=()
    for s in "$@"; do a+=(--set "$s"); done
    "$MOE_BIN" params "$cfg" "${a[@]}" --json | $PY -c '
import json, sys
c = json.load(sys.stdin)["components"]
print(sum(c[k]["matmul"] for k in ("routed_experts", "shared_experts", "dense_ffn")))'
}
mapfile -t dsets < <(sets_of dense-s3 | grep -v '^out_dir=')
moe_ffn=$(ffn base.json) || fail "moe params base.json"
dense_ffn=$(ffn base.json "${dsets[@]}") || fail "moe params dense"
[ "$moe_ffn" = "$dense_ffn" ] || fail "dense baseline: FFN matmul entries per token $dense_ffn, MoE base $moe_ffn"
say "dense-s3: d_ff=$Fd, FFN matmul entries per token $dense_ffn = MoE $moe_ffn"
# experts axis: E=1 takes top_k 1 with expert_d_ff K·Fe; E=2 and 8 keep top_k and expert_d_ff;
# ep_size 2 lowered to 1 only where it does not divide E
sets_of experts-1-s4 | grep -qx "model.n_experts=1" || fail "experts-1: n_experts"
sets_of experts-1-s4 | grep -qx "model.top_k=1" || fail "experts-1: expected top_k=1"
sets_of experts-1-s4 | grep -qx "model.expert_d_ff=$((K * Fe))" || fail "experts-1: expected expert_d_ff=$((K * Fe))"
sets_of experts-1-s4 | grep -qx "parallel.ep_size=1" || fail "experts-1: expected ep_size=1"
sets_of experts-8-s4 | grep -qx "model.n_experts=8" || fail "experts-8: n_experts"
sets_of experts-8-s4 | grep -qE "^(model.top_k|model.expert_d_ff|parallel.ep_size)=" && fail "experts-8: top_k, expert_d_ff and ep_size must stay"
sets_of experts-2-s3 | grep -qx "train.seed=3" || fail "experts-2-s3: expected train.seed=3"
prev=
for E in 1 2 8; do
    mapfile -t xs < <(sets_of experts-$E-s3 | grep -v '^out_dir=')
    act=$("$MOE_BIN" params base.json $(printf -- '--set %s ' "${xs[@]}") --json | $PY -c '
import json, sys
j = json.load(sys.stdin)
print(j["active_params"] - j["components"]["router"]["active"], j["total_params"])')
    read -r a t <<<"$act"
    [ -z "$prev" ] || [ "$a" = "$prev" ] || fail "experts-$E: active params without the router $a, expected $prev (fixed along the axis)"
    prev=$a
    say "experts-$E: active params (router excluded) $a, total $t"
done
say "PASS"
