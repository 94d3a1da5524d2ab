#!/bin/bash
# test_interop.sh: moe export / moe import / moe train --init-from end to end (issue 15,
# docs/interop.md). Tiny models (d_model 32, 2 layers, 4 experts, seq 16) of each exported class,
# trained a few steps:
#   - export -> import -> export gives the same bytes (config.json, safetensors, the index when
#     sharded), also when the import is written at world 2 / EP 2, 4 / 4 and 4 / 2 (one shard at a
#     time: its files and manifest layout checked); import -> moe eval gives the original
#     checkpoint's validation loss, digit for digit;
#   - a checkpoint written at np 2 / EP 2 exports to the same bytes as the same weights written at
#     np 1 (moe train --init-from at lr 1e-30: far below every weight's ulp, the first step leaves them unchanged), which also
#     shows --init-from loads the weights at step 0;
#   - --init-from an imported model and from the original start with the same first-step loss;
#     so does a LoRA run on the imported model (its checkpoint names the import as its base);
#   - the exported directory, run through tests/hf_reference.py (a plain-Python forward written
#     from transformers' modules), gives moe eval's loss on the same windows (1e-5 relative);
#   - bf16 export holds the round-to-nearest-even bf16 of every f32 value (checked in Python);
#   - every refusal: exit code, the field in the message, nothing written.
set -u
: "${MOE_BIN:?set MOE_BIN to the moe binary}"
: "${MPIRUN:=mpirun}"
: "${MOE_SOURCE_DIR:?set MOE_SOURCE_DIR}"
M=$MOE_BIN
WORK=$(mktemp -d /tmp/test_interop.XXXXXX)
say() { echo "[test_interop] $*"; }
fail() {
    echo "[test_interop] FAIL: $*" >&2
    echo "[test_interop] files kept in $WORK" >&2
    exit 1
}
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
cat "$MOE_SOURCE_DIR"/docs/*.md >data.txt
head -c 65 "$MOE_SOURCE_DIR/docs/architecture.md" >val.txt # 4 windows of 16 + 1: one batch

# config NAME MODEL_FIELDS [ROUTER_FIELDS] [EP]: a tiny run config NAME.json writing run-NAME.
config() {
    local heads=', "n_heads": 4' experts=', "n_experts": 4'
    case "$2" in *'"n_heads"'*) heads= ;; esac
    case "$2" in *'"n_experts"'*) experts= ;; esac
    cat >"$1.json" <<JSON
{"name": "$1", "model": {"d_model": 32, "n_layers": 2, "top_k": 2,
  "expert_d_ff": 24, "max_seq_len": 64 $heads $experts $2},
 "router": {${3:-}},
 "train": {"global_batch": 4, "seq_len": 16, "steps": 3, "warmup_steps": 1, "log_interval": 10,
  "eval_interval": 0, "eval_batches": 2, "checkpoint_interval": 0},
 "data": {"path": "$WORK/data.txt", "val_fraction": 0.1},
 "parallel": {"ep_size": ${4:-1}}, "out_dir": "$WORK/run-$1"}
JSON
}
train() { # NAME [NP] [ARGS...]
    local name=$1 np=${2:-1}
    shift 2 2>/dev/null || shift
    "$MPIRUN" -np "$np" "$M" train "$name.json" "$@" >"train-$name.out" 2>&1 </dev/null ||
        fail "train $name -np $np: $(cat "train-$name.out")"
}
val() { # CHECKPOINT [ARGS...]: the val_loss figure moe eval prints
    local ck=$1
    shift
    "$M" eval --checkpoint "$ck" "$@" >eval.out 2>&1 || fail "eval $ck: $(cat eval.out)"
    awk '/^val_loss/ {print $2}' eval.out
}
same_dir() { # A B: the same files with the same bytes
    [ "$(ls "$1")" = "$(ls "$2")" ] || fail "$1 and $2 hold other files: $(ls "$1") vs $(ls "$2")"
    for f in "$1"/*; do cmp -s "$f" "$2/$(basename "$f")" || fail "$f and $2/$(basename "$f") differ"; done
}

# ---------------------------------------------------------------- the four classes
config mix ', "n_kv_heads": 2'
config q2 ', "d_ff": 48, "n_shared_experts": 1, "shared_expert_d_ff": 16, "shared_expert_gate": true,
  "attn_qkv_bias": true, "first_dense_layers": 1' '"renormalize": false' 2
config q2b ', "n_shared_experts": 2, "shared_expert_d_ff": 8, "shared_expert_gate": true'
config q3 ', "n_heads": 2, "n_kv_heads": 1, "head_dim": 8, "d_ff": 48, "qk_norm": "per_head",
  "tie_embeddings": true, "dense_layers": [1]'
config q3b ', "d_ff": 48, "qk_norm": "per_head", "attn_qkv_bias": true, "attn_out_bias": true'
config ol ', "n_kv_heads": 2, "qk_norm": "full"' '"renormalize": false' 2
config olb ', "qk_norm": "full", "attn_qkv_bias": true, "attn_out_bias": true, "tie_embeddings": true'
EVAL=(--set train.seq_len=16 --set train.global_batch=4 --set train.eval_batches=2
      --data "$WORK/data.txt" --set data.val_fraction=0.1)
for a in mix:1:MixtralForCausalLM q2:2:Qwen2MoeForCausalLM q2b:1:Qwen2MoeForCausalLM q3:1:Qwen3MoeForCausalLM q3b:1:Qwen3MoeForCausalLM \
    ol:2:OlmoeForCausalLM olb:1:OlmoeForCausalLM; do
    IFS=: read -r n np cls <<<"$a"
    train "$n" "$np"
    shard=()
    [ "$n" = q2 ] && shard=(--max-shard-size 40000)
    "$M" export "run-$n" "hf-$n" "${shard[@]}" >x.out 2>&1 || fail "export $n: $(cat x.out)"
    grep -q "\"$cls\"" "hf-$n/config.json" || fail "$n: config.json is not $cls: $(cat "hf-$n/config.json")"
    "$M" import "hf-$n" "imp-$n" >x.out 2>&1 || fail "import $n: $(cat x.out)"
    "$M" export "imp-$n" "re-$n" "${shard[@]}" >x.out 2>&1 || fail "re-export $n: $(cat x.out)"
    same_dir "hf-$n" "re-$n"
    # Imported at another layout (one rank's shard at a time): its files, and the same export.
    for lay in 2:2 4:4 4:2; do
        IFS=: read -r w e <<<"$lay"
        o="imp-$n-w$w-ep$e"
        "$M" import "hf-$n" "$o" --world "$w" --ep "$e" >x.out 2>&1 || fail "import $n at $lay: $(cat x.out)"
        c="$o/checkpoints/step_00000000"
        want="dense.bin $(for r in $(seq 0 $((e - 1))); do printf 'experts-%05d.bin ' "$r"; done)"
        got="$(cd "$c" && ls *.bin | tr '\n' ' ')"
        [ "$got" = "$want" ] || fail "import $n at world $w, ep $e: files '$got', expected '$want'"
        grep -q "^  \"world_size\": $w," "$c/manifest.json" && grep -q "^  \"ep_size\": $e," "$c/manifest.json" ||
            fail "import $n at world $w, ep $e: the manifest's layout: $(grep -i size "$c/manifest.json" | head -3)"
        "$M" export "$o" "re-$o" "${shard[@]}" >x.out 2>&1 || fail "re-export $o: $(cat x.out)"
        same_dir "hf-$n" "re-$o"
    done
    a=$(val "run-$n") b=$(val "imp-$n" "${EVAL[@]}")
    if [ "$n" = q2b ]; then # 2 shared experts become one of twice the width: another sum order
        python3 -c "import sys; a,b=float('$a'),float('$b'); sys.exit(abs(a-b) > 1e-5*abs(a))" ||
            fail "$n: eval of the import $b, of the original $a (beyond 1e-5 relative)"
    else
        [ -n "$a" ] && [ "$a" = "$b" ] || fail "$n: eval of the import '$b', of the original '$a'"
    fi
    # The exported directory through an independent forward written from transformers' modules.
    r=$(python3 "$MOE_SOURCE_DIR/tests/hf_reference.py" "hf-$n" val.txt 16) || fail "$n: reference"
    v=$(val "run-$n" --set data.val_path="$WORK/val.txt" --set train.eval_batches=1)
    python3 -c "import sys; sys.exit(abs($r - $v) > 1e-5 * abs($v))" ||
        fail "$n: the HF reference forward gives $r, moe eval $v"
    say "$n ($cls, trained at np $np): export -> import (world 1, 2/ep 2, 4/ep 4, 4/ep 2) -> export identical, val_loss $a = $b;" \
        "HF reference forward $r = moe $v"
done
ls hf-q2 | grep -q "model-00001-of-0000" && [ -f hf-q2/model.safetensors.index.json ] ||
    fail "q2 with --max-shard-size 40000 is not sharded: $(ls hf-q2)"
for t in model.layers.0.mlp.gate_proj.weight model.layers.1.mlp.shared_expert_gate.weight \
    model.layers.1.mlp.experts.3.down_proj.weight model.layers.1.self_attn.q_proj.bias; do
    grep -q "\"$t\"" hf-q2/model.safetensors.index.json || fail "q2: $t not in the index"
done
grep -q '"mlp_only_layers": \[\s*0\s*\]' <(tr -d '\n' <hf-q2/config.json) ||
    fail "q2: mlp_only_layers is not [0]: $(cat hf-q2/config.json)"
grep -q '"attention_bias": true' hf-q3b/config.json && grep -q '"model.layers.1.self_attn.o_proj.bias"' \
    hf-q3b/model.safetensors || fail "q3b: attention_bias and its o_proj bias"
grep -q '"shared_expert_intermediate_size": 16' hf-q2b/config.json ||
    fail "q2b: two shared experts of 8 are not one of 16"
python3 - hf-ol hf-olb <<'EOF' || fail "OLMoE config.json and tensor names"
import json, struct, sys
for d, bias in zip(sys.argv[1:], (False, True)):
    c = json.load(open(d + "/config.json"))
    want = {"model_type": "olmoe", "norm_topk_prob": bias, "attention_bias": bias,
            "clip_qkv": None, "intermediate_size": 24, "num_experts": 4}
    bad = {k: c.get(k, "absent") for k, v in want.items() if c.get(k, "absent") != v}
    assert not bad and "head_dim" not in c, (d, bad, c)
    b = open(d + "/model.safetensors", "rb").read()
    h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
    kv = c["num_key_value_heads"] * c["hidden_size"] // c["num_attention_heads"]
    shapes = {"model.layers.1.self_attn.q_norm.weight": [c["hidden_size"]],
              "model.layers.1.self_attn.k_norm.weight": [kv],
              "model.layers.0.mlp.gate.weight": [4, 32],
              "model.layers.0.mlp.experts.3.down_proj.weight": [32, 24]}
    if bias:
        shapes["model.layers.0.self_attn.o_proj.bias"] = [32]
    for n, s in shapes.items():
        assert h.get(n, {}).get("shape") == s, (d, n, h.get(n))
    assert ("model.layers.0.self_attn.q_proj.bias" in h) == bias, d
    assert ("lm_head.weight" in h) != bias, d  # olb is tied
print("[test_interop] OLMoE: config.json fields; q/k norm, gate, expert, bias tensor shapes")
EOF

# A dense model upcycled (moe upcycle, docs/upcycling.md) exports as Mixtral computing the dense
# model's function: the HF reference forward of the export gives the dense checkpoint's loss.
config dense ', "n_experts": 0, "d_ff": 48'
train dense 1
"$M" upcycle run-dense up --experts 4 --top-k 2 >x.out 2>&1 || fail "upcycle: $(cat x.out)"
"$M" export up hf-up >x.out 2>&1 || fail "export of the upcycled model: $(cat x.out)"
r=$(python3 "$MOE_SOURCE_DIR/tests/hf_reference.py" hf-up val.txt 16) || fail "reference of hf-up"
v=$(val run-dense --set data.val_path="$WORK/val.txt" --set train.eval_batches=1)
python3 -c "import sys; sys.exit(abs($r - $v) > 1e-5 * abs($v))" ||
    fail "upcycled export: HF reference $r, the dense model's moe eval $v"
say "dense -> moe upcycle -> export (Mixtral): HF reference forward $r = the dense model's $v"

# ---------------------------------------------------------------- layouts and --init-from
# q2 was trained at np 2, EP 2. The same weights at np 1: one step at lr 1e-30 (below every
# weight's ulp: the update rounds away) from them.
cp q2.json q2one.json
sed -i -e "s#run-q2\"#run-q2one\"#" -e 's/"ep_size": 2/"ep_size": 1/' -e 's/"steps": 3/"steps": 1/' q2one.json
train q2one 1 --init-from run-q2 --set train.lr=1e-30 --set train.min_lr=1e-30
grep -q "initialised from .*run-q2/checkpoints/step_00000003 (its step 3; weights only" \
    train-q2one.out || fail "--init-from: no line naming the checkpoint: $(cat train-q2one.out)"
grep -q "1 steps from 0" train-q2one.out || fail "--init-from does not start at step 0"
"$M" export run-q2one hf-q2one --max-shard-size 40000 >x.out 2>&1 || fail "export q2one: $(cat x.out)"
same_dir hf-q2 hf-q2one
say "np 2 / EP 2 checkpoint and its weights at np 1 (--init-from, lr 1e-30) export the same bytes"
# An import (written at world 1) read at np 2 / EP 2: --init-from reshards it; the first step's
# loss equals that of the same run from the original checkpoint (same layout, same weights).
for src in run-q2 imp-q2 imp-q2-w2-ep2; do
    sed -e "s#run-q2\"#run-ep-$src\"#" -e 's/"steps": 3/"steps": 1/' q2.json >"ep-$src.json"
    train "ep-$src" 2 --init-from "$src"
done
l1=$(awk '/^step +1\// {print $5}' train-ep-run-q2.out) l2=$(awk '/^step +1\// {print $5}' train-ep-imp-q2.out)
l3=$(awk '/^step +1\// {print $5}' train-ep-imp-q2-w2-ep2.out)
[ -n "$l1" ] && [ "$l1" = "$l2" ] || fail "np 2 EP 2 --init-from: first-step loss $l2 from the import, $l1 from the original"
[ "$l1" = "$l3" ] || fail "np 2 EP 2 --init-from the import written at world 2 / EP 2: first-step loss $l3, from the original $l1"
say "the import of q2 at np 2 / EP 2 (--init-from): first-step loss $l2, as from the original"
# The first step from the imported model and from the original: the same loss.
first() { awk '/^step +1\// {print $5}' "train-$1.out"; }
for src in run-mix imp-mix; do
    cp mix.json "i-$src.json"
    sed -i "s#run-mix\"#run-i-$src\"#" "i-$src.json"
    train "i-$src" 1 --init-from "$src"
done
fresh=$(awk '/^step +1\// {print $5}' train-mix.out)
[ "$(first i-run-mix)" = "$(first i-imp-mix)" ] ||
    fail "first-step loss from the import $(first i-imp-mix), from the original $(first i-run-mix)"
[ "$(first i-run-mix)" != "$fresh" ] || fail "first-step loss from the weights equals a fresh start ($fresh)"
say "--init-from: first-step loss $(first i-imp-mix) from the import and the original (fresh: $fresh)"
# LoRA on an imported model (issue 16, docs/lora.md): adapters (B = 0) on the import's weights
# give the first-step loss of the same run without them; the run's checkpoint names the import.
cp mix.json l-imp-mix.json
sed -i "s#run-mix\"#run-l-imp-mix\"#" l-imp-mix.json
train l-imp-mix 1 --init-from imp-mix --set lora.rank=4 --set 'lora.targets=["attention","experts"]'
grep -q "^LoRA r 4, alpha 16: " train-l-imp-mix.out || fail "LoRA from the import: no LoRA header line"
[ "$(first l-imp-mix)" = "$(first i-imp-mix)" ] ||
    fail "LoRA from the import: first-step loss $(first l-imp-mix), without adapters $(first i-imp-mix)"
"$M" inspect run-l-imp-mix/latest >x.out 2>&1 && grep -q "^base: .*imp-mix/checkpoints/step_00000000" x.out ||
    fail "LoRA from the import: its checkpoint does not name the import: $(head -12 x.out)"
say "LoRA --init-from the import: first-step loss $(first l-imp-mix), as without adapters; the checkpoint names the import"

# ---------------------------------------------------------------- bf16
"$M" export run-mix bf-mix --dtype bf16 >x.out 2>&1 || fail "export bf16: $(cat x.out)"
grep -q '"torch_dtype": "bfloat16"' bf-mix/config.json || fail "bf16: torch_dtype"
python3 - hf-mix/model.safetensors bf-mix/model.safetensors <<'EOF' || fail "bf16 values"
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, b[8 + n:]
hf, df = load(sys.argv[1])
hb, db = load(sys.argv[2])
assert [k for k in hf if k != "__metadata__"] == [k for k in hb if k != "__metadata__"]
count = 0
for k, v in hf.items():
    if k == "__metadata__":
        continue
    w = hb[k]
    assert w["dtype"] == "BF16" and w["shape"] == v["shape"], k
    a0, a1 = v["data_offsets"]
    b0, b1 = w["data_offsets"]
    f = struct.unpack("<%dI" % ((a1 - a0) // 4), df[a0:a1])
    h = struct.unpack("<%dH" % ((b1 - b0) // 2), db[b0:b1])
    for u, g in zip(f, h):
        want = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest, ties to even (finite)
        if want != g:
            sys.exit("%s: f32 %08x -> bf16 %04x, expected %04x" % (k, u, g, want))
        count += 1
print("[test_interop] bf16: %d values are the RNE rounding of the f32 export" % count)
EOF
"$M" import bf-mix imp-bf >x.out 2>&1 || fail "import of the bf16 export: $(cat x.out)"
"$M" export imp-bf re-bf --dtype bf16 >x.out 2>&1 || fail "bf16 re-export: $(cat x.out)"
same_dir bf-mix re-bf

"$M" export run-mix nested/dir/ >x.out 2>&1 || fail "export into nested/dir/: $(cat x.out)"
same_dir hf-mix nested/dir
[ "$(ls nested)" = dir ] || fail "export into nested/dir/ left $(ls nested)"

# ---------------------------------------------------------------- refusals
refuse() { # CODE MESSAGE CMD...: exit CODE, MESSAGE on stderr
    local code=$1 msg=$2
    shift 2
    "$@" >r.out 2>r.err </dev/null # (stdin: the refusal table below is read from it)
    local rc=$?
    [ $rc = "$code" ] || fail "$*: exit $rc, expected $code: $(cat r.err r.out)"
    grep -qF -- "$msg" r.err || fail "$*: message lacks '$msg': $(cat r.err)"
}
# export: what the HF classes cannot express (each a trained checkpoint; nothing written).
i=0
while IFS='|' read -r model router msg; do
    i=$((i + 1))
    config "bad$i" "$model" "$router"
    train "bad$i" 1 --set train.steps=1
    if [ -z "$msg" ]; then # the control: a plain model exports
        "$M" export "run-bad$i" "out-bad$i" >x.out 2>&1 </dev/null || fail "control export: $(cat x.out)"
        continue
    fi
    refuse 2 "$msg" "$M" export "run-bad$i" "out-bad$i"
    [ -e "out-bad$i" ] && fail "refused export bad$i wrote out-bad$i"
    ls -d out-bad$i.tmp* >/dev/null 2>&1 && fail "refused export bad$i left a temporary directory"
done <<'EOF'
||
, "n_experts": 0||model.n_experts = 0
, "positions": "learned"||model.positions = learned
, "activation": "gelu"||model.activation = gelu
, "attn_out_bias": true||model.attn_out_bias = true: only Qwen3-MoE
, "qk_norm": "per_head", "attn_qkv_bias": true||Qwen3-MoE's attention_bias puts biases on q, k, v and o_proj together
, "ffn_bias": true||model.ffn_bias = true
, "router_bias": true||model.router_bias = true
|"scoring": "sigmoid"|router.scoring = sigmoid
|"strategy": "expert_choice"|router.strategy = expert_choice
|"capacity_factor": 1.25|router.capacity_factor = 1.25
|"bias_update_rate": 0.001|router.bias_update_rate = 0.001
|"n_group": 2, "topk_group": 1|router.n_group = 2
|"routed_scaling": 2.5|router.routed_scaling = 2.5
|"renormalize": false|router.renormalize = false
, "first_dense_layers": 1||model.first_dense_layers / dense_layers
, "attn_qkv_bias": true||model.attn_qkv_bias = true without shared experts
, "n_shared_experts": 1||model.shared_expert_gate = false
, "qk_norm": "per_head", "n_shared_experts": 1, "shared_expert_gate": true||Qwen3-MoE (the class with q/k norms) has no shared experts
, "qk_norm": "full", "n_shared_experts": 1, "shared_expert_gate": true||OLMoE (the class with q/k norms over the whole projections) has no shared experts
, "qk_norm": "full", "attn_qkv_bias": true||OLMoE's attention_bias puts biases on q, k, v and o_proj together
, "qk_norm": "full", "first_dense_layers": 1||OLMoE has an MoE FFN in every layer
, "qk_norm": "full", "head_dim": 4||OLMoE's head dim is hidden_size / num_attention_heads
EOF
# (the first line, a plain model, must export: it is the control)
[ -d out-bad1 ] || fail "the control model did not export"
mkdir -p full && touch full/x
refuse 2 "is not empty" "$M" export run-mix full
refuse 2 "no checkpoint at" "$M" export "$WORK/nothing" out-x
cp -r run-mix run-corrupt
f=run-corrupt/checkpoints/step_00000003/dense.bin
printf '\x55' | dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null
refuse 3 "" "$M" export run-corrupt out-corrupt
[ -e out-corrupt ] && fail "export of a corrupt checkpoint wrote out-corrupt"
[ "$i" = 23 ] || fail "the refusal table ran $i of its 23 rows"
say "export refusals: exit 2 naming the field, 3 for a corrupt checkpoint; nothing written"

# import: config.json and safetensors faults.
tamper() { # NAME PYTHON-EXPR-ON-c [SRC]: SRC (hf-mix) copied to t-NAME with config.json changed
    rm -rf "t-$1" && cp -r "${3:-hf-mix}" "t-$1"
    python3 -c "import json; p='t-$1/config.json'; c=json.load(open(p)); $2; json.dump(c, open(p, 'w'))"
}
tamper ds "c['model_type']='deepseek_v3'; c['architectures']=['DeepseekV3ForCausalLM']"
refuse 2 "moe import reads mixtral, qwen2_moe, qwen3_moe and olmoe" "$M" import t-ds o-ds
# rope_theta and rms_norm_eps are model.rope_theta / model.norm_eps: a published Mixtral's 1e6
# and Qwen's 1e-6 import, change the function as the reference forward says, and export back.
tamper theta "c['rope_theta']=1000000.0; c['rms_norm_eps']=1e-6"
"$M" import t-theta o-theta >x.out 2>&1 || fail "import with rope_theta 1e6: $(cat x.out)"
r=$(python3 "$MOE_SOURCE_DIR/tests/hf_reference.py" t-theta val.txt 16) || fail "reference of t-theta"
VAL1=("${EVAL[@]}" --set data.val_path="$WORK/val.txt" --set train.eval_batches=1)
v=$(val o-theta "${VAL1[@]}") v0=$(val imp-mix "${VAL1[@]}")
python3 -c "import sys; sys.exit(abs($r - $v) > 1e-5 * abs($v))" ||
    fail "rope_theta 1e6, rms_norm_eps 1e-6: the HF reference forward gives $r, moe eval $v"
[ "$v" != "$v0" ] || fail "rope_theta 1e6 and rms_norm_eps 1e-6 left moe eval's loss at $v0"
"$M" export o-theta re-theta >x.out 2>&1 || fail "export of o-theta: $(cat x.out)"
cmp -s t-theta/model.safetensors re-theta/model.safetensors || fail "re-theta: other weights"
python3 -c "import json,sys; c=json.load(open('re-theta/config.json')); sys.exit(not (c['rope_theta'] == 1e6 and c['rms_norm_eps'] == 1e-6))" ||
    fail "re-theta/config.json lost rope_theta / rms_norm_eps: $(cat re-theta/config.json)"
say "rope_theta 1e6, rms_norm_eps 1e-6: imported; HF reference $r = moe $v (theta 1e4: $v0); exported back"
tamper scaling "c['rope_scaling']={'type': 'linear', 'factor': 2.0}"
refuse 2 "rope_scaling is set" "$M" import t-scaling o-scaling
tamper act "c['hidden_act']='gelu'"
refuse 2 'hidden_act "gelu"' "$M" import t-act o-act
tamper experts "c['num_hidden_layers']=3"
refuse 3 "tensor model.layers.2.input_layernorm.weight is missing" "$M" import t-experts o-experts
tamper width "c['intermediate_size']=32"
refuse 3 "model.layers.0.block_sparse_moe.experts.0.w1.weight has shape [24, 32], config.json implies [32, 32]" "$M" import t-width o-width
tamper tied "c['tie_word_embeddings']=True"
refuse 3 "tensor lm_head.weight is not part of MixtralForCausalLM" "$M" import t-tied o-tied
rm -rf t-trunc && cp -r hf-mix t-trunc && truncate -s -4 t-trunc/model.safetensors
refuse 3 "model.safetensors" "$M" import t-trunc o-trunc
rm -rf t-none && mkdir t-none && cp hf-mix/config.json t-none/
refuse 2 "no such file" "$M" import t-none o-none
refuse 2 "--set model.*" "$M" import hf-mix o-set --set model.d_model=64
refuse 2 "ep_size" "$M" import hf-mix o-ep --world 3 --ep 3
# OLMoE: clip_qkv (a clamp of q, k, v moe does not apply) and a head_dim OLMoE cannot have.
tamper clip "c['clip_qkv']=8.0" hf-ol
refuse 2 "clip_qkv is set" "$M" import t-clip o-clip
tamper hdim "c['head_dim']=4" hf-ol
refuse 2 "head_dim 4: OLMoE's head dim is hidden_size / num_attention_heads" "$M" import t-hdim o-hdim
for o in o-ds o-scaling o-act o-experts o-width o-tied o-trunc o-none o-set o-ep o-clip o-hdim; do
    [ -e "$o/checkpoints" ] && fail "refused import wrote $o/checkpoints"
done
refuse 2 "--resume latest" "$M" import hf-mix imp-mix
say "import refusals: exit 2 for what moe cannot reproduce, 3 for bad or mismatched tensors"

# --init-from refusals.
sed 's/"n_experts": 4/"n_experts": 8/' mix.json >other.json
sed -i "s#run-mix\"#run-other\"#" other.json
refuse 2 "model.n_experts (4 in the checkpoint, 8 in the config)" "$M" train other.json --init-from imp-mix
refuse 2 "model.n_experts (4 in the checkpoint, 8 in the config)" "$M" train other.json --init-from imp-mix --dry-run
sed "s#run-other\"#run-dry\"#; s/\"n_experts\": 8/\"n_experts\": 4/" other.json >dry.json
"$M" train dry.json --init-from imp-mix --dry-run >x.out 2>&1 || fail "--dry-run --init-from: $(cat x.out)"
grep -q -- "--init-from: .*imp-mix/checkpoints/step_00000000 (its step 0, .* files verified; the same model)" x.out ||
    fail "--dry-run --init-from: no line for the checkpoint: $(cat x.out)"
[ -e run-dry ] && fail "--dry-run --init-from wrote run-dry"
refuse 2 "--init-from and --resume exclude each other" "$M" train other.json --init-from imp-mix --resume latest
say "ok"
