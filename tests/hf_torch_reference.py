#!/usr/bin/python3
# hf_torch_reference.py: an independent PyTorch forward of the Hugging Face MoE causal LMs that
# `moe export` writes — MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM,
# OlmoeForCausalLM — read from the model directory alone (config.json + safetensors). Written from
# the published architecture (transformers' modeling_{mixtral,qwen2_moe,qwen3_moe,olmoe}.py and
# their configurations), not from
# moe's code; it does not import transformers. Trade-off: plain, unbatched-by-expert loops that
# read like the architecture, at the tiny sizes of tests/test_hf_parity.py.
#
# The forward (eager attention, no cache, positions 0..S-1 of every sequence, no padding mask):
#   x = embed_tokens[ids]
#   per layer:  x += o_proj(attention(input_layernorm(x)))
#               x += mlp(post_attention_layernorm(x))
#   logits = lm_head(norm(x))            lm_head = embed_tokens when tie_word_embeddings
# RMSNorm(x) = w * (x / sqrt(mean(x^2) + eps)), the statistics in float32 (or the compute dtype).
# Attention: q, k, v = linear(x) (+ bias: Qwen2-MoE q/k/v, Qwen3-MoE attention_bias), viewed as
#   (heads, head_dim); Qwen3-MoE: RMSNorm of width head_dim on each head of q (q_norm) and of k
#   (k_norm) before RoPE; OLMoE: RMSNorm over the whole q projection (width hidden_size, q_norm)
#   and the whole k projection (Hkv * head_dim, k_norm) before the view into heads, then
#   clip_qkv's clamp of q, k, v when set; head_dim = hidden_size // num_attention_heads.
#   RoPE, rotate-half convention: inv_freq_i = theta^(-2i/d), i < d/2;
#   angle(s, i) = s * inv_freq_i duplicated to d columns; y = x cos + rotate_half(x) sin with
#   rotate_half(x) = cat(-x[d/2:], x[:d/2]). Grouped-query: kv head of query head h = h // (H/Hkv).
#   softmax(q k^T / sqrt(head_dim) + causal mask) v, heads concatenated, o_proj (+ Qwen3 and
#   OLMoE attention_bias).
# Sparse MoE block: router_logits = gate(x); p = softmax(router_logits) in float32; top-k of p;
#   renormalised to sum 1 (Mixtral always; Qwen, OLMoE: norm_topk_prob);
#   out = sum_k p_k expert_k(x),
#   expert(x) = down(silu(gate_proj x) * up_proj x) (Mixtral names: w2(silu(w1 x) * w3 x)).
#   Qwen2-MoE adds sigmoid(shared_expert_gate(x)) * shared_expert(x). Qwen layers listed in
#   mlp_only_layers or off the decoder_sparse_step grid use a dense MLP of intermediate_size.
#
# Command line (the parity test imports the module instead):
#   /usr/bin/python3 tests/hf_torch_reference.py MODEL_DIR --logits FILE
# reads a `moe eval --logits` file (docs/training.md), runs the same tokens and prints
# max|a-b| / max|b| of moe's logits a against these b.
import json
import math
import os
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError as err:  # the test FAILS on this (install-deps.sh installs python3-torch)
    sys.exit("hf_torch_reference.py: %s.\nIt needs PyTorch and numpy for the system Python:\n"
             "    apt-get install python3-torch    (install-deps.sh does)\n"
             "and runs as /usr/bin/python3 tests/hf_torch_reference.py" % err)


class RefError(Exception):
    """A model directory this reference cannot read: the message says what and where."""


# ---------------------------------------------------------------- safetensors

def read_safetensors(path):
    """{name: float32 torch tensor} of one .safetensors file: u64 LE header length N, N bytes
    of JSON {name: {dtype, shape, data_offsets [begin, end)}, __metadata__?}, then the data."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise RefError("%s: shorter than the 8-byte header length" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise RefError("%s: header length %d past the file (%d bytes)" % (path, n, len(raw)))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info["dtype"], [int(d) for d in info["shape"]]
        begin, end = info["data_offsets"]
        count = math.prod(shape)
        buf = data[begin:end]
        if dtype in ("F32", "BF16", "F16"):
            width = 4 if dtype == "F32" else 2
        else:
            raise RefError("%s: tensor %s has dtype %s (this reference reads F32, BF16, F16)"
                           % (path, name, dtype))
        if len(buf) != width * count or end > len(data):
            raise RefError("%s: tensor %s: %d bytes for %s x %d" % (path, name, len(buf), dtype,
                                                                     count))
        if dtype == "F32":
            arr = np.frombuffer(buf, dtype="<f4").astype(np.float32)
        elif dtype == "F16":
            arr = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        else:  # bfloat16: the high half of a float32
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(arr.copy()).reshape(shape)
    return out


def read_model_dir(path):
    """(config dict, {name: tensor}) of a Hugging Face model directory: model.safetensors, or
    the shards named by model.safetensors.index.json's weight_map."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(path, shard))
            for name, t in part.items():
                if weight_map.get(name) != shard:
                    raise RefError("%s: tensor %s is in %s but the index says %s"
                                   % (path, name, shard, weight_map.get(name)))
                tensors[name] = t
        missing = set(weight_map) - set(tensors)
        if missing:
            raise RefError("%s: the index names tensors no shard holds: %s"
                           % (path, sorted(missing)[:5]))
    elif os.path.exists(single):
        tensors = read_safetensors(single)
    else:
        raise RefError("%s: neither model.safetensors nor model.safetensors.index.json" % path)
    return config, tensors


# ---------------------------------------------------------------- the model

ARCHS = {"MixtralForCausalLM": "mixtral", "Qwen2MoeForCausalLM": "qwen2_moe",
         "Qwen3MoeForCausalLM": "qwen3_moe", "OlmoeForCausalLM": "olmoe"}


class Weights:
    """The tensors by name, each taken at most once, with its shape checked; left() lists the
    ones no module used (an exporter writing a tensor HF would ignore is a bug too)."""

    def __init__(self, tensors, dtype, bf16=False):
        self.t, self.used, self.dtype, self.bf16 = tensors, set(), dtype, bf16

    def get(self, name, shape):
        if name not in self.t:
            raise RefError("missing tensor %s (expected shape %s)" % (name, list(shape)))
        t = self.t[name]
        if list(t.shape) != list(shape):
            raise RefError("tensor %s has shape %s, the architecture needs %s"
                           % (name, list(t.shape), list(shape)))
        self.used.add(name)
        if self.bf16:  # torch rounds float32 -> bfloat16 to nearest, ties to even
            t = t.to(torch.bfloat16)
        return t.to(self.dtype)

    def left(self):
        return sorted(set(self.t) - self.used)


class Reference:
    """The causal LM of one exported directory. forward(ids (B, S) int64) -> logits (B, S, V).
    dtype: the compute dtype (torch.float32 as transformers runs these weights, or float64).
    bf16_weights: round every weight to bfloat16 first (what a bf16 export should hold).
    weights: instead of the directory's safetensors, an object with get(name, shape) -> tensor
    and left() -> unused names (a test's generator of a model: see Weights)."""

    def __init__(self, model_dir, dtype=torch.float32, bf16_weights=False, weights=None):
        if weights is None:
            config, tensors = read_model_dir(model_dir)
        else:
            with open(os.path.join(model_dir, "config.json")) as f:
                config, tensors = json.load(f), None
        self.c, self.dtype, self.dir = config, dtype, model_dir
        arch = (config.get("architectures") or [None])[0]
        if arch not in ARCHS:
            raise RefError("%s: architectures = %s; this reference knows %s"
                           % (model_dir, config.get("architectures"), sorted(ARCHS)))
        self.arch = ARCHS[arch]
        if config.get("model_type") != self.arch:
            raise RefError("%s: model_type %s for %s" % (model_dir, config.get("model_type"), arch))
        if config.get("hidden_act", "silu") != "silu":
            raise RefError("hidden_act %s (these classes use silu)" % config["hidden_act"])
        rs = config.get("rope_scaling")
        if rs and rs.get("rope_type", rs.get("type", "default")) != "default":
            raise RefError("rope_scaling %s is not implemented here" % rs)
        self.D = self._need("hidden_size")
        self.V = self._need("vocab_size")
        self.L = self._need("num_hidden_layers")
        self.H = self._need("num_attention_heads")
        self.Hkv = config.get("num_key_value_heads") or self.H
        self.Dh = config.get("head_dim") or self.D // self.H
        self.clip = None
        if self.arch == "olmoe":  # OlmoeAttention: head_dim = hidden_size // num_attention_heads
            self.Dh = self.D // self.H
            self.clip = config.get("clip_qkv")
        self.eps = self._need("rms_norm_eps")
        rp = config.get("rope_parameters") or {}  # newer transformers keep rope_theta there
        default_theta = 1e6 if self.arch == "mixtral" else 10000.0  # the classes' defaults
        self.theta = config.get("rope_theta", rp.get("rope_theta", default_theta))
        self.K = self._need("num_experts_per_tok")
        if self.arch == "mixtral":
            self.E, self.F = self._need("num_local_experts"), self._need("intermediate_size")
            self.renorm = True
            self.qkv_bias = self.o_bias = False
        elif self.arch == "olmoe":  # experts of intermediate_size, every layer sparse
            self.E, self.F = self._need("num_experts"), self._need("intermediate_size")
            self.renorm = bool(config.get("norm_topk_prob", False))
            self.qkv_bias = self.o_bias = bool(config.get("attention_bias", False))
        else:
            self.E, self.F = self._need("num_experts"), self._need("moe_intermediate_size")
            self.renorm = bool(config.get("norm_topk_prob", False))
            if self.arch == "qwen2_moe":  # q/k/v biases (config.qkv_bias where it exists), o none
                self.qkv_bias, self.o_bias = bool(config.get("qkv_bias", True)), False
            else:
                self.qkv_bias = self.o_bias = bool(config.get("attention_bias", False))
        self.window = config.get("sliding_window") if self.arch == "mixtral" else None
        if self.arch in ("qwen2_moe", "qwen3_moe") and config.get("use_sliding_window", False):
            # Qwen's window covers only some layers (layer_types, max_window_layers)
            raise RefError("use_sliding_window is not implemented here for %s" % arch)
        self.tied = bool(config.get("tie_word_embeddings", False))
        self.w = weights if weights is not None else Weights(tensors, dtype, bf16_weights)
        self._load()
        extra = self.w.left()
        if extra:
            raise RefError("%s: tensors %s architecture does not use: %s"
                           % (model_dir, arch, extra[:8]))

    def _need(self, key):
        if key not in self.c:
            raise RefError("%s: config.json has no %s (%s needs it)" % (self.dir, key, self.arch))
        return self.c[key]

    def _sparse(self, i):
        if self.arch in ("mixtral", "olmoe"):
            return True
        c = self.c
        return (i not in c.get("mlp_only_layers", []) and self.E > 0
                and (i + 1) % c.get("decoder_sparse_step", 1) == 0)

    def _mlp(self, p, F, names=("gate_proj", "up_proj", "down_proj")):
        D, g = self.D, self.w.get
        return {"gate": g("%s.%s.weight" % (p, names[0]), (F, D)),
                "up": g("%s.%s.weight" % (p, names[1]), (F, D)),
                "down": g("%s.%s.weight" % (p, names[2]), (D, F))}

    def _load(self):
        g, D, H, Hkv, Dh = self.w.get, self.D, self.H, self.Hkv, self.Dh
        self.embed = g("model.embed_tokens.weight", (self.V, D))
        self.layers = []
        for i in range(self.L):
            p = "model.layers.%d" % i
            a = "%s.self_attn" % p
            ly = {"ln1": g(p + ".input_layernorm.weight", (D,)),
                  "ln2": g(p + ".post_attention_layernorm.weight", (D,)),
                  "q": g(a + ".q_proj.weight", (H * Dh, D)),
                  "k": g(a + ".k_proj.weight", (Hkv * Dh, D)),
                  "v": g(a + ".v_proj.weight", (Hkv * Dh, D)),
                  "o": g(a + ".o_proj.weight", (D, H * Dh))}
            if self.qkv_bias:
                ly["bq"] = g(a + ".q_proj.bias", (H * Dh,))
                ly["bk"] = g(a + ".k_proj.bias", (Hkv * Dh,))
                ly["bv"] = g(a + ".v_proj.bias", (Hkv * Dh,))
            if self.o_bias:
                ly["bo"] = g(a + ".o_proj.bias", (D,))
            if self.arch == "qwen3_moe":
                ly["qn"] = g(a + ".q_norm.weight", (Dh,))
                ly["kn"] = g(a + ".k_norm.weight", (Dh,))
            if self.arch == "olmoe":
                ly["qn_full"] = g(a + ".q_norm.weight", (D,))  # OlmoeRMSNorm(hidden_size)
                ly["kn_full"] = g(a + ".k_norm.weight", (Hkv * Dh,))
            if self.arch == "mixtral":
                m = p + ".block_sparse_moe"
                ly["gate"] = g(m + ".gate.weight", (self.E, D))
                ly["experts"] = [self._mlp("%s.experts.%d" % (m, e), self.F, ("w1", "w3", "w2"))
                                 for e in range(self.E)]
            elif self._sparse(i):
                m = p + ".mlp"
                ly["gate"] = g(m + ".gate.weight", (self.E, D))
                ly["experts"] = [self._mlp("%s.experts.%d" % (m, e), self.F)
                                 for e in range(self.E)]
                if self.arch == "qwen2_moe":
                    ly["shared"] = self._mlp(m + ".shared_expert",
                                             self._need("shared_expert_intermediate_size"))
                    ly["shared_gate"] = g(m + ".shared_expert_gate.weight", (1, D))
            else:
                ly["dense"] = self._mlp(p + ".mlp", self._need("intermediate_size"))
            self.layers.append(ly)
        self.norm = g("model.norm.weight", (D,))
        if self.tied:
            self.head = self.embed
            if "lm_head.weight" in self.w.t:  # saved anyway by some writers: must be the same
                h = g("lm_head.weight", (self.V, D))
                if not torch.equal(h, self.embed):
                    raise RefError("tie_word_embeddings but lm_head.weight != embed_tokens")
        else:
            self.head = g("lm_head.weight", (self.V, D))

    # -- the pieces, as the architecture states them
    def rmsnorm(self, x, w):
        x32 = x.to(torch.float32) if self.dtype == torch.float32 else x
        var = x32.pow(2).mean(-1, keepdim=True)
        return w * (x32 * torch.rsqrt(var + self.eps)).to(self.dtype)

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def rope(self, S):
        d = self.Dh
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        freqs = torch.outer(torch.arange(S, dtype=torch.float32), inv_freq.float())
        emb = torch.cat((freqs, freqs), dim=-1)  # (S, d)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def attention(self, x, ly, cos, sin):
        B, S, _ = x.shape
        H, Hkv, Dh = self.H, self.Hkv, self.Dh
        q, k, v = x @ ly["q"].T, x @ ly["k"].T, x @ ly["v"].T
        if self.qkv_bias:
            q, k, v = q + ly["bq"], k + ly["bk"], v + ly["bv"]
        if "qn_full" in ly:  # OLMoE: RMSNorm over the whole projections, before the heads view
            q = self.rmsnorm(q, ly["qn_full"])
        if "kn_full" in ly:
            k = self.rmsnorm(k, ly["kn_full"])
        if self.clip is not None:  # OLMoE's clip_qkv
            q, k, v = (t.clamp(-self.clip, self.clip) for t in (q, k, v))
        q, k, v = q.view(B, S, H, Dh), k.view(B, S, Hkv, Dh), v.view(B, S, Hkv, Dh)
        if "qn" in ly:  # Qwen3: per-head RMSNorm over head_dim, before RoPE
            q, k = self.rmsnorm(q, ly["qn"]), self.rmsnorm(k, ly["kn"])
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, S, Dh)
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=1)  # query head h reads kv head h // rep
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(2, 3)) / math.sqrt(Dh)
        i = torch.arange(S)[:, None]
        j = torch.arange(S)[None, :]
        allowed = j <= i
        if self.window is not None:
            allowed = allowed & (i - j < self.window)
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = torch.softmax(scores.to(torch.float32), dim=-1).to(self.dtype)
        out = (att @ v).transpose(1, 2).reshape(B, S, H * Dh)
        out = out @ ly["o"].T
        if self.o_bias:
            out = out + ly["bo"]
        return out

    @staticmethod
    def swiglu(x, m):
        return (torch.nn.functional.silu(x @ m["gate"].T) * (x @ m["up"].T)) @ m["down"].T

    def moe(self, x, ly):
        B, S, D = x.shape
        h = x.reshape(-1, D)
        logits = h @ ly["gate"].T
        p = torch.softmax(logits.to(torch.float32), dim=-1)
        w, sel = torch.topk(p, self.K, dim=-1)
        if self.renorm:
            w = w / w.sum(dim=-1, keepdim=True)
        w = w.to(self.dtype)
        out = torch.zeros_like(h)
        for e in range(self.E):
            rows, slot = torch.where(sel == e)
            if rows.numel():
                y = self.swiglu(h[rows], ly["experts"][e]) * w[rows, slot, None]
                out.index_add_(0, rows, y)
        if "shared" in ly:
            out = out + torch.sigmoid(h @ ly["shared_gate"].T) * self.swiglu(h, ly["shared"])
        return out.reshape(B, S, D), sel.reshape(B, S, self.K), p.reshape(B, S, self.E)

    @torch.no_grad()
    def forward(self, ids, routing=None):
        """ids (B, S) -> logits (B, S, V) in the compute dtype. routing: a list that gets, per
        sparse layer, (selected experts (B, S, K), router probabilities (B, S, E))."""
        ids = torch.as_tensor(ids, dtype=torch.int64)
        if ids.min() < 0 or ids.max() >= self.V:
            raise RefError("token ids outside [0, %d)" % self.V)
        B, S = ids.shape
        cos, sin = self.rope(S)
        x = self.embed[ids]
        for ly in self.layers:
            x = x + self.attention(self.rmsnorm(x, ly["ln1"]), ly, cos, sin)
            h = self.rmsnorm(x, ly["ln2"])
            if "dense" in ly:
                x = x + self.swiglu(h, ly["dense"])
            else:
                y, sel, p = self.moe(h, ly)
                if routing is not None:
                    routing.append((sel, p))
                x = x + y
        return self.rmsnorm(x, self.norm) @ self.head.T


# ---------------------------------------------------------------- moe's logits file

def read_moe_logits(path):
    """(tokens (B, S) int64, logits (B, S, V) float32) of a `moe eval --logits` file:
    "MOELOGIT", u32 B, S, V, 0, i32 tokens (B, S), f32 logits (B, S, V), little-endian."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != b"MOELOGIT":
        raise RefError("%s: not a moe logits file (magic %r)" % (path, raw[:8]))
    B, S, V, zero = struct.unpack("<4I", raw[8:24])
    want = 24 + 4 * B * S + 4 * B * S * V
    if zero != 0 or len(raw) != want:
        raise RefError("%s: %d bytes, %d x %d x %d logits take %d" % (path, len(raw), B, S, V,
                                                                       want))
    tok = np.frombuffer(raw, dtype="<i4", count=B * S, offset=24).reshape(B, S)
    lg = np.frombuffer(raw, dtype="<f4", count=B * S * V, offset=24 + 4 * B * S)
    return (torch.from_numpy(tok.astype(np.int64)),
            torch.from_numpy(lg.astype(np.float32).reshape(B, S, V)))


def max_rel_err(a, b):
    """max|a - b| / max|b| (the parity figure), in float64."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float((a - b).abs().max() / b.abs().max())


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="PyTorch reference logits of an exported HF MoE "
                                 "directory, compared with `moe eval --logits FILE`")
    ap.add_argument("model_dir")
    ap.add_argument("--logits", required=True, help="a moe eval --logits file")
    ap.add_argument("--float64", action="store_true", help="compute in float64")
    a = ap.parse_args(argv)
    try:
        ref = Reference(a.model_dir, torch.float64 if a.float64 else torch.float32)
        ids, moe_logits = read_moe_logits(a.logits)
        if moe_logits.shape[-1] != ref.V:
            raise RefError("vocab %d in %s, %d in the model" % (moe_logits.shape[-1], a.logits,
                                                               ref.V))
        got = ref.forward(ids)
    except (RefError, OSError, ValueError, KeyError) as err:
        print("hf_torch_reference.py: %s" % err, file=sys.stderr)
        return 2
    print("%s: %d x %d tokens, max|moe - ref| / max|ref| = %.3e"
          % (ref.arch, ids.shape[0], ids.shape[1], max_rel_err(moe_logits, got)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
