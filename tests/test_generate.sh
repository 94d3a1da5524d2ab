#!/bin/bash
# test_generate.sh: `moe generate` end to end. A tiny byte-vocabulary model trained a few steps
# at np 2 (EP 2); then the same seed gives the same text at np 1, at np 2 (EP 1) and at np 2 with
# the experts split (EP 2), greedy (temperature 0) too; another seed gives other text; the prompt
# is printed first; token-file prompts must be ids; bad arguments are refused with exit 2 and a
# message naming the option, a missing checkpoint with exit 2 naming the path.
set -u
: "${MOE_BIN:?set MOE_BIN to the moe binary}"
: "${MPIRUN:=mpirun}"
WORK=$(mktemp -d /tmp/test_generate.XXXXXX)
say() { echo "[test_generate] $*"; }
fail() {
    echo "[test_generate] FAIL: $*" >&2
    echo "[test_generate] files kept in $WORK" >&2
    exit 1
}
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
cat >tiny.json <<JSON
{"name": "gen", "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 96, "n_experts": 4,
  "top_k": 2, "expert_d_ff": 40, "first_dense_layers": 1, "max_seq_len": 64},
 "train": {"global_batch": 4, "seq_len": 16, "steps": 8, "warmup_steps": 1, "log_interval": 4,
  "eval_interval": 8, "eval_batches": 1, "checkpoint_interval": 8},
 "parallel": {"ep_size": 2}, "out_dir": "$WORK/run"}
JSON
"$MPIRUN" -np 2 "$MOE_BIN" train tiny.json >train.out 2>&1 || fail "train: $(cat train.out)"
gen() { # NP OUT ARGS...: generate with NP ranks into OUT
    local np=$1 out=$2
    shift 2
    "$MPIRUN" -np "$np" "$MOE_BIN" generate run "$@" >"$out" 2>"$out.err" ||
        fail "generate -np $np $*: exit $?: $(cat "$out.err")"
}
for t in 1 0; do
    gen 1 a1.$t --prompt "The " --tokens 40 --seed 5 --temperature $t
    gen 2 a2.$t --prompt "The " --tokens 40 --seed 5 --temperature $t
    gen 2 a3.$t --prompt "The " --tokens 40 --seed 5 --temperature $t --set parallel.ep_size=2
    cmp -s a1.$t a2.$t || fail "T $t: np 1 and np 2 differ: '$(cat a1.$t)' vs '$(cat a2.$t)'"
    cmp -s a1.$t a3.$t || fail "T $t: np 1 and np 2 EP 2 differ: '$(cat a1.$t)' vs '$(cat a3.$t)'"
    case "$(head -c 4 a1.$t)" in "The ") ;; *) fail "T $t: output does not start with the prompt: $(cat a1.$t)" ;; esac
    [ "$(wc -c <a1.$t)" = 45 ] || fail "T $t: expected 4 + 40 bytes and a newline, got $(wc -c <a1.$t)"
done
gen 1 b1 --prompt "The " --tokens 40 --seed 6
cmp -s a1.1 b1 && fail "seeds 5 and 6 gave the same 40 tokens: $(cat b1)"
gen 1 g2 --prompt "The " --tokens 40 --seed 6 --temperature 0
cmp -s a1.0 g2 || fail "greedy depends on the seed: '$(cat a1.0)' vs '$(cat g2)'"
# A context past the window (16) slides: 60 tokens at --context 16 and at the default agree.
gen 1 s1 --prompt "The " --tokens 60 --seed 5
gen 1 s2 --prompt "The " --tokens 60 --seed 5 --context 16
cmp -s s1 s2 || fail "--context 16 differs from the default (train.seq_len 16)"
say "same text at np 1, np 2, np 2 EP 2: $(cat a1.1)"

refuse() { # CODE MESSAGE ARGS...: generate must exit CODE and print MESSAGE on stderr
    local code=$1 msg=$2
    shift 2
    "$MOE_BIN" generate "$@" >r.out 2>r.err
    local rc=$?
    [ $rc = "$code" ] || fail "generate $*: exit $rc, expected $code: $(cat r.err)"
    grep -qF -- "$msg" r.err || fail "generate $*: message lacks '$msg': $(cat r.err)"
    [ -s r.out ] && fail "generate $*: printed on stdout: $(cat r.out)"
    return 0
}
refuse 2 "--temperature needs a number in [0, 1000], got -1" run --temperature -1
refuse 2 "--tokens needs an integer in [1, 100000], got 0" run --tokens 0
refuse 2 "--tokens needs an integer in [1, 100000], got 10000000" run --tokens 10000000
refuse 2 "--top-k 300 exceeds the vocabulary (256 tokens)" run --top-k 300
refuse 2 "--context 65 exceeds the model's positions" run --context 65
refuse 2 "no checkpoint at $WORK/nothing" "$WORK/nothing"
refuse 2 "missing CHECKPOINT" --tokens 5
refuse 2 "whitespace-separated token ids in [0, 256)" run --set data.format=u16_tokens --prompt "1 x"
gen 1 ids --set data.format=u16_tokens --prompt "84 104" --tokens 3 --seed 1
grep -qE '^84 104( [0-9]+){3}$' ids || fail "token ids output: $(cat ids)"
say "ok"
