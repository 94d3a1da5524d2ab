#!/usr/bin/env python3
"""hf_reference.py: an independent reference for test_interop.sh — the forward pass of a Hugging
Face model directory (MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM,
OlmoeForCausalLM) written from transformers' published architecture (its module structure, names
and config fields), in plain Python double precision, reading config.json and the safetensors
file(s) itself. Prints the mean
cross-entropy of next-token prediction over the validation windows moe eval uses for a
data.val_path file (docs/data.md: n = (N - 1) // S windows, window k starts at k·S, S + 1 bytes).

usage: hf_reference.py HF_DIR VAL_FILE SEQ_LEN
"""
import json
import math
import os
import struct
import sys


def load_tensors(d):
    files = ["model.safetensors"]
    ix = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(ix):
        files = sorted(set(json.load(open(ix))["weight_map"].values()))
    out = {}
    for f in files:
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        data = b[8 + n:]
        for name, t in h.items():
            if name == "__metadata__":
                continue
            a0, a1 = t["data_offsets"]
            raw = data[a0:a1]
            if t["dtype"] == "F32":
                v = list(struct.unpack("<%df" % (len(raw) // 4), raw))
            elif t["dtype"] == "BF16":
                u = struct.unpack("<%dH" % (len(raw) // 2), raw)
                v = [struct.unpack("<f", struct.pack("<I", x << 16))[0] for x in u]
            else:
                raise SystemExit("dtype " + t["dtype"])
            shape = t["shape"]
            if len(shape) == 2:  # rows
                r, c = shape
                v = [v[i * c:(i + 1) * c] for i in range(r)]
            out[name] = v
    return out


def linear(x, w, b=None):  # nn.Linear: y = x W^T + b, W (out, in)
    y = [sum(xi * wi for xi, wi in zip(x, row)) for row in w]
    return [a + c for a, c in zip(y, b)] if b is not None else y


def rmsnorm(x, w, eps):
    r = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * r * g for v, g in zip(x, w)]


def silu(v):
    return v / (1.0 + math.exp(-v))


def mlp(x, g, u, d):  # down(act(gate(x)) * up(x))
    return linear([silu(a) * b for a, b in zip(linear(x, g), linear(x, u))], d)


def rope(x, pos, theta):  # rotate_half over one head: (x1, x2) halves
    h = len(x) // 2
    out = [0.0] * len(x)
    for i in range(h):
        f = pos / theta ** (2.0 * i / len(x))
        c, s = math.cos(f), math.sin(f)
        out[i] = x[i] * c - x[i + h] * s
        out[i + h] = x[i + h] * c + x[i] * s
    return out


def forward(c, W, toks):
    arch = c["architectures"][0]
    mix, qwen2, qwen3 = arch.startswith("Mixtral"), arch.startswith("Qwen2Moe"), arch.startswith("Qwen3Moe")
    olmoe = arch.startswith("Olmoe")
    D, H, Hkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    Dh = D // H if olmoe else c.get("head_dim") or D // H  # OlmoeAttention: hidden_size // H
    eps, theta, K = c["rms_norm_eps"], c["rope_theta"], c["num_experts_per_tok"]
    E = c["num_local_experts"] if mix else c["num_experts"]
    renorm = True if mix else c["norm_topk_prob"]
    dense = set(c.get("mlp_only_layers", []))
    S = len(toks)
    x = [list(W["model.embed_tokens.weight"][t]) for t in toks]
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = [rmsnorm(v, W[p + "input_layernorm.weight"], eps) for v in x]
        bias = lambda n: W.get(p + "self_attn.%s_proj.bias" % n)  # Qwen2 qkv_bias, Qwen3 attention_bias
        q = [linear(v, W[p + "self_attn.q_proj.weight"], bias("q")) for v in h]
        k = [linear(v, W[p + "self_attn.k_proj.weight"], bias("k")) for v in h]
        v_ = [linear(v, W[p + "self_attn.v_proj.weight"], bias("v")) for v in h]
        if olmoe:  # OlmoeAttention: q_norm(q_proj(x)) over hidden_size, k_norm over Hkv * Dh
            q = [rmsnorm(r, W[p + "self_attn.q_norm.weight"], eps) for r in q]
            k = [rmsnorm(r, W[p + "self_attn.k_norm.weight"], eps) for r in k]
            if c.get("clip_qkv") is not None:
                raise SystemExit("clip_qkv is not implemented here")
        heads = lambda row, n: [row[j * Dh:(j + 1) * Dh] for j in range(n)]
        qh = [heads(r, H) for r in q]
        kh = [heads(r, Hkv) for r in k]
        vh = [heads(r, Hkv) for r in v_]
        if qwen3:
            qh = [[rmsnorm(a, W[p + "self_attn.q_norm.weight"], eps) for a in r] for r in qh]
            kh = [[rmsnorm(a, W[p + "self_attn.k_norm.weight"], eps) for a in r] for r in kh]
        qh = [[rope(a, s, theta) for a in r] for s, r in enumerate(qh)]
        kh = [[rope(a, s, theta) for a in r] for s, r in enumerate(kh)]
        att = []
        for s in range(S):
            row = []
            for j in range(H):
                g = j // (H // Hkv)
                sc = [sum(a * b for a, b in zip(qh[s][j], kh[t][g])) / math.sqrt(Dh) for t in range(s + 1)]
                m = max(sc)
                e = [math.exp(z - m) for z in sc]
                z = sum(e)
                row += [sum(e[t] / z * vh[t][g][i] for t in range(s + 1)) for i in range(Dh)]
            att.append(row)
        x = [[a + b for a, b in zip(xv, linear(av, W[p + "self_attn.o_proj.weight"], bias("o")))] for xv, av in zip(x, att)]
        h = [rmsnorm(v, W[p + "post_attention_layernorm.weight"], eps) for v in x]
        out = []
        for v in h:
            if not mix and l in dense:
                y = mlp(v, W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"], W[p + "mlp.down_proj.weight"])
            else:
                b = p + ("block_sparse_moe." if mix else "mlp.")
                logits = linear(v, W[b + "gate.weight"])
                m = max(logits)
                pr = [math.exp(z - m) for z in logits]
                z = sum(pr)
                pr = [a / z for a in pr]
                top = sorted(range(E), key=lambda i: -pr[i])[:K]
                tot = sum(pr[i] for i in top) if renorm else 1.0
                y = [0.0] * D
                for i in top:
                    e = b + "experts.%d." % i
                    names = ("w1", "w3", "w2") if mix else ("gate_proj", "up_proj", "down_proj")
                    o = mlp(v, *[W[e + n + ".weight"] for n in names])
                    y = [a + pr[i] / tot * bb for a, bb in zip(y, o)]
                if qwen2:
                    s = b + "shared_expert."
                    o = mlp(v, W[s + "gate_proj.weight"], W[s + "up_proj.weight"], W[s + "down_proj.weight"])
                    g = 1.0 / (1.0 + math.exp(-linear(v, W[b + "shared_expert_gate.weight"])[0]))
                    y = [a + g * bb for a, bb in zip(y, o)]
            out.append(y)
        x = [[a + b for a, b in zip(xv, yv)] for xv, yv in zip(x, out)]
    head = W["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else W["lm_head.weight"]
    return [linear(rmsnorm(v, W["model.norm.weight"], eps), head) for v in x]


def main():
    d, val, S = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = json.load(open(os.path.join(d, "config.json")))
    W = load_tensors(d)
    data = open(val, "rb").read()
    n = (len(data) - 1) // S
    tot, cnt = 0.0, 0
    for k in range(n):
        w = data[k * S:k * S + S + 1]
        logits = forward(c, W, list(w[:S]))
        for s in range(S):
            m = max(logits[s])
            lse = m + math.log(sum(math.exp(z - m) for z in logits[s]))
            tot += lse - logits[s][w[s + 1]]
            cnt += 1
    print("%.6f" % (tot / cnt))


if __name__ == "__main__":
    main()
