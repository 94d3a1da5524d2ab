#!/usr/bin/python3
# torch_fixtures.py: writes the golden fixtures of the one-rank MoE layer (tests/fixtures/*.bin)
# from an independent PyTorch implementation with autograd; tests/test_layer_golden.c compares the
# C layer against them. Trade-off: the reference is deliberately naive (per-expert loops, routing
# decided in numpy on detached scores) so that it is easy to read against the spec.
#
# PyTorch is NOT a dependency of the project: only this script needs it, and the fixtures it
# writes are committed. Regenerate with (Debian's torch is for the system interpreter):
#     apt-get install python3-torch
#     /usr/bin/python3 tests/torch_fixtures.py [--out tests/fixtures] [--check64]
#
# The math (docs/routing.md, same as the C layer):
#   z = x·Wg (+ bg); p = softmax(z) or sigmoid(z); token choice takes the top-k experts of p + b
#   (b: balancing bias, selection only; ties: lower expert index); w = p_sel, renormalised to sum 1
#   over the token's k picks if asked, times routed_scaling. Capacity C = ceil(cf·T·k/E) (cf > 0):
#   each expert keeps the C selecting pairs with the highest p (ties: earlier token); weights are
#   not renormalised after dropping. Expert choice: p = softmax(z), C = ceil(cf·T·k/E) (cf 0 -> 1),
#   each expert takes its top-C tokens by p[:, e], weight p[t, e] (times routed_scaling). Aux loss (token choice only):
#   α·E·Σ f_i·P_i, f_i = count_i/(T·k) before dropping (constant), P_i = mean_t s_i, s = p
#   (softmax) or p/Σ_j p_j (sigmoid). Z-loss β·mean_t logsumexp(z_t)². Expert FFN: GELU (tanh)
#   gelu(x·W1+b1)·W2+b2 or SwiGLU (silu(x·W1+b1) ⊙ (x·W3+b3))·W2+b2. Shared experts see every
#   token, scaled by sigmoid(x·ws) if gated. Loss L = Σ y·dy + L_aux + L_z.
#
# File format (little-endian), read by tests/test_layer_golden.c:
#   8 bytes magic "MOEGLD01"; uint32 header_len; header_len bytes of ASCII "key value\n" lines
#   (the case config); uint32 n_tensors; per tensor: uint32 name_len, name bytes (no NUL),
#   uint32 ndim, int64 dims[ndim], float32 data[prod(dims)] row-major.
import argparse
import math
import os
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError as err:
    sys.exit("torch_fixtures.py: %s.\nThis script (and only this script: the project itself does "
             "not use PyTorch) needs PyTorch and numpy for the system Python:\n"
             "    apt-get install python3-torch\n"
             "then run it with /usr/bin/python3 tests/torch_fixtures.py" % err)

GAP = 1e-4  # minimum separation of the last kept and first rejected score: no ambiguous choice

# name, config, seed. Sizes keep all fixtures together well under 200 KB.
CASES = [
    ("a_softmax_top2_gelu", dict(
        T=24, D=12, F=16, E=6, k=2, scoring="softmax", strategy="token_choice",
        renormalize=1, capacity_factor=0.0, aux_coef=1.0, z_coef=0.05, routed_scaling=1.0,
        activation="gelu", ffn_bias=0, router_bias=0, n_shared=0, shared_d_ff=0,
        shared_gate=0, balancing_bias=0), 101),
    ("b_sigmoid_top3_bias_swiglu", dict(
        T=32, D=8, F=16, E=8, k=3, scoring="sigmoid", strategy="token_choice",
        renormalize=1, capacity_factor=0.0, aux_coef=1.0, z_coef=0.1, routed_scaling=1.0,
        activation="swiglu", ffn_bias=0, router_bias=0, n_shared=0, shared_d_ff=0,
        shared_gate=0, balancing_bias=1), 202),
    ("c_swiglu_bias_shared_gate", dict(
        T=16, D=12, F=24, E=4, k=2, scoring="softmax", strategy="token_choice",
        renormalize=0, capacity_factor=0.0, aux_coef=0.5, z_coef=0.05, routed_scaling=2.0,
        activation="swiglu", ffn_bias=1, router_bias=1, n_shared=1, shared_d_ff=20,
        shared_gate=1, balancing_bias=0), 303),
    ("d_capacity_drops_gelu", dict(
        T=32, D=8, F=16, E=4, k=2, scoring="softmax", strategy="token_choice",
        renormalize=1, capacity_factor=1.0, aux_coef=1.0, z_coef=0.05, routed_scaling=1.0,
        activation="gelu", ffn_bias=1, router_bias=0, n_shared=0, shared_d_ff=0,
        shared_gate=0, balancing_bias=0), 404),
    ("e_expert_choice_swiglu", dict(
        T=24, D=8, F=16, E=6, k=2, scoring="softmax", strategy="expert_choice",
        renormalize=0, capacity_factor=0.0, aux_coef=0.0, z_coef=0.05, routed_scaling=1.0,
        activation="swiglu", ffn_bias=0, router_bias=0, n_shared=0, shared_d_ff=0,
        shared_gate=0, balancing_bias=0), 505),
    ("f_sigmoid_cap_shared2_gelu", dict(
        T=24, D=8, F=12, E=6, k=2, scoring="sigmoid", strategy="token_choice",
        renormalize=0, capacity_factor=1.25, aux_coef=0.5, z_coef=0.0, routed_scaling=1.5,
        activation="gelu", ffn_bias=1, router_bias=1, n_shared=2, shared_d_ff=12,
        shared_gate=0, balancing_bias=1), 606),
]


def capacity(cfg):
    cf = cfg["capacity_factor"]
    if cfg["strategy"] == "expert_choice" and cf == 0.0:
        cf = 1.0
    if cf <= 0.0:
        return 0
    return int(math.ceil(cf * cfg["T"] * cfg["k"] / cfg["E"]))


def make_weights(cfg, rng):
    """Random parameters and inputs in numpy float32, natural (in, out) layouts, experts first."""
    T, D, F, E = cfg["T"], cfg["D"], cfg["F"], cfg["E"]
    n = lambda *shape, s=1.0: (rng.standard_normal(shape) * s).astype(np.float32)
    w = {}
    w["x"] = n(T, D)
    # dy is scaled down so that the aux/z-loss share of dWg and dx is well above the tolerance.
    w["dy"] = n(T, D, s=0.25)
    # A gate spread of ~1.5 in logits: scores neither flat nor saturated.
    w["wg"] = n(D, E, s=1.5 / math.sqrt(D))
    if cfg["router_bias"]:
        w["bg"] = n(E, s=0.3)
    if cfg["balancing_bias"]:
        w["balance_bias"] = n(E, s=0.08)
    w["w1"] = n(E, D, F, s=1.0 / math.sqrt(D))
    w["w2"] = n(E, F, D, s=1.0 / math.sqrt(F))
    if cfg["activation"] == "swiglu":
        w["w3"] = n(E, D, F, s=1.0 / math.sqrt(D))
    if cfg["ffn_bias"]:
        w["b1"] = n(E, F, s=0.2)
        w["b2"] = n(E, D, s=0.2)
        if cfg["activation"] == "swiglu":
            w["b3"] = n(E, F, s=0.2)
    S, Fs = cfg["n_shared"], cfg["shared_d_ff"]
    if S > 0:
        w["shared_w1"] = n(S, D, Fs, s=1.0 / math.sqrt(D))
        w["shared_w2"] = n(S, Fs, D, s=1.0 / math.sqrt(Fs))
        if cfg["activation"] == "swiglu":
            w["shared_w3"] = n(S, D, Fs, s=1.0 / math.sqrt(D))
        if cfg["ffn_bias"]:
            w["shared_b1"] = n(S, Fs, s=0.2)
            w["shared_b2"] = n(S, D, s=0.2)
            if cfg["activation"] == "swiglu":
                w["shared_b3"] = n(S, Fs, s=0.2)
        if cfg["shared_gate"]:
            w["shared_gate"] = n(D, s=1.0 / math.sqrt(D))
    return w


def gelu_tanh(h):
    return 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h * h * h)))


def ffn(x, act, w1, w2, w3=None, b1=None, b2=None, b3=None):
    h = x @ w1
    if b1 is not None:
        h = h + b1
    if act == "gelu":
        a = gelu_tanh(h)
    else:
        g = x @ w3
        if b3 is not None:
            g = g + b3
        a = h * torch.sigmoid(h) * g
    y = a @ w2
    if b2 is not None:
        y = y + b2
    return y


def select(cfg, p_np, bal):
    """Discrete routing in numpy float64 on the detached scores. Returns (pairs, sel, kept,
    counts, ec_tokens, ok): pairs is a list of (expert, token array, slot array or None); ok is
    False when a choice is closer than GAP to a tie (the caller reseeds)."""
    T, E, k = cfg["T"], cfg["E"], cfg["k"]
    C = capacity(cfg)
    p = p_np.astype(np.float64)
    if cfg["strategy"] == "expert_choice":
        assert C <= T
        ec = np.zeros((E, C), dtype=np.int64)
        for e in range(E):
            order = np.argsort(-p[:, e], kind="stable")  # ties: lower token index first
            if C < T and p[order[C - 1], e] - p[order[C], e] <= GAP:
                return None
            ec[e] = np.sort(order[:C])
        return dict(ec=ec)
    score = p + (bal.astype(np.float64) if bal is not None else 0.0)
    order = np.argsort(-score, axis=1, kind="stable")  # ties: lower expert index first
    sel = order[:, :k]
    if k < E:
        s_sorted = np.take_along_axis(score, order, axis=1)
        if np.min(s_sorted[:, k - 1] - s_sorted[:, k]) <= GAP:
            return None
    counts = np.bincount(sel.ravel(), minlength=E)
    kept = np.ones((T, k), dtype=bool)
    if C > 0:
        for e in range(E):
            tok, slot = np.nonzero(sel == e)  # row-major: increasing token
            if len(tok) <= C:
                continue
            pe = p[tok, e]
            o = np.argsort(-pe, kind="stable")  # ties: earlier token first
            if pe[o[C - 1]] - pe[o[C]] <= GAP:
                return None
            kept[tok[o[C:]], slot[o[C:]]] = False
    return dict(sel=sel, kept=kept, counts=counts)


def forward(cfg, params, route, dtype):
    """Builds the layer in `dtype` from numpy params; returns (tensors dict, outputs dict)."""
    t = {k: torch.tensor(v, dtype=dtype, requires_grad=(k not in ("x_none",)))
         for k, v in params.items()}
    for name in ("dy", "balance_bias"):
        if name in t:
            t[name].requires_grad_(False)
    T, E, k = cfg["T"], cfg["E"], cfg["k"]
    x = t["x"]
    z = x @ t["wg"]
    if "bg" in t:
        z = z + t["bg"]
    if cfg["strategy"] == "expert_choice" or cfg["scoring"] == "softmax":
        p = torch.softmax(z, dim=1)
    else:
        p = torch.sigmoid(z)
    act = cfg["activation"]
    g = lambda name, e: t[name][e] if name in t else None
    y = torch.zeros(T, cfg["D"], dtype=dtype)
    if cfg["strategy"] == "expert_choice":
        for e in range(E):
            tok = torch.tensor(route["ec"][e], dtype=torch.long)
            we = p[tok, e] * cfg["routed_scaling"]
            out = ffn(x[tok], act, t["w1"][e], t["w2"][e], g("w3", e), g("b1", e), g("b2", e),
                      g("b3", e))
            y = y.index_add(0, tok, we[:, None] * out)
        aux = torch.zeros((), dtype=dtype)
    else:
        sel = torch.tensor(route["sel"], dtype=torch.long)
        w = torch.gather(p, 1, sel)  # (T, k)
        if cfg["renormalize"]:
            w = w / w.sum(dim=1, keepdim=True)
        w = w * cfg["routed_scaling"]
        kept = route["kept"]
        for e in range(E):
            tok_np, slot_np = np.nonzero((route["sel"] == e) & kept)
            if len(tok_np) == 0:
                continue
            tok = torch.tensor(tok_np, dtype=torch.long)
            slot = torch.tensor(slot_np, dtype=torch.long)
            out = ffn(x[tok], act, t["w1"][e], t["w2"][e], g("w3", e), g("b1", e), g("b2", e),
                      g("b3", e))
            y = y.index_add(0, tok, w[tok, slot][:, None] * out)
        f = torch.tensor(route["counts"] / float(T * k), dtype=dtype)
        s = p if cfg["scoring"] == "softmax" else p / p.sum(dim=1, keepdim=True)
        aux = cfg["aux_coef"] * E * torch.sum(f * s.mean(dim=0))
    zl = cfg["z_coef"] * torch.mean(torch.logsumexp(z, dim=1) ** 2)
    if cfg["n_shared"] > 0:
        ysh = torch.zeros(T, cfg["D"], dtype=dtype)
        for s_ in range(cfg["n_shared"]):
            ysh = ysh + ffn(x, act, t["shared_w1"][s_], t["shared_w2"][s_], g("shared_w3", s_),
                            g("shared_b1", s_), g("shared_b2", s_), g("shared_b3", s_))
        if cfg["shared_gate"]:
            ysh = ysh * torch.sigmoid(x @ t["shared_gate"])[:, None]
        y = y + ysh
    loss = torch.sum(y * t["dy"]) + aux + zl
    loss.backward()
    out = dict(y=y.detach(), aux_loss=aux.detach(), z_loss=zl.detach(), scores=p.detach())
    grads = {"d" + name: v.grad.detach() for name, v in t.items() if v.grad is not None}
    return out, grads


def build_case(cfg, seed):
    """Draws parameters (reseeding until the routing has no near-ties), runs float32."""
    for attempt in range(1000):
        rng = np.random.RandomState(seed + 7919 * attempt)
        params = make_weights(cfg, rng)
        x = torch.tensor(params["x"])
        z = x @ torch.tensor(params["wg"])
        if "bg" in params:
            z = z + torch.tensor(params["bg"])
        if cfg["strategy"] == "expert_choice" or cfg["scoring"] == "softmax":
            p = torch.softmax(z, dim=1)
        else:
            p = torch.sigmoid(z)
        route = select(cfg, p.numpy(), params.get("balance_bias"))
        if route is None:
            continue
        if cfg["strategy"] == "token_choice":
            if cfg["capacity_factor"] > 0 and route["kept"].all():
                continue  # the capacity case must actually drop
            if cfg["balancing_bias"]:
                plain = select(dict(cfg, capacity_factor=0.0), p.numpy(), None)
                if plain is None or np.array_equal(np.sort(plain["sel"], 1),
                                                   np.sort(route["sel"], 1)):
                    continue  # the balancing bias must change some token's choice
        return params, route, attempt
    raise RuntimeError("no tie-free draw found")


def write_fixture(path, cfg, tensors):
    header = "".join("%s %s\n" % (k, v) for k, v in cfg.items()).encode("ascii")
    with open(path, "wb") as fh:
        fh.write(b"MOEGLD01")
        fh.write(struct.pack("<I", len(header)))
        fh.write(header)
        fh.write(struct.pack("<I", len(tensors)))
        for name, arr in tensors:
            arr = np.ascontiguousarray(arr, dtype="<f4")
            nb = name.encode("ascii")
            fh.write(struct.pack("<I", len(nb)) + nb)
            fh.write(struct.pack("<I", arr.ndim))
            fh.write(struct.pack("<%dq" % arr.ndim, *arr.shape))
            fh.write(arr.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "fixtures"))
    ap.add_argument("--check64", action="store_true",
                    help="also run in float64 and print the float32 reference's own error")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, cfg, seed in CASES:
        params, route, attempt = build_case(cfg, seed)
        out, grads = forward(cfg, params, route, torch.float32)
        cfg_out = dict(cfg, capacity=capacity(cfg), seed=seed + 7919 * attempt)
        tensors = [(k, v) for k, v in params.items()]
        tensors += [(k, v.numpy()) for k, v in out.items()]
        if cfg["strategy"] == "expert_choice":
            tensors.append(("ec_tokens", route["ec"].astype(np.float32)))
            dropped = 0
        else:
            tensors.append(("sel", route["sel"].astype(np.float32)))
            tensors.append(("kept", route["kept"].astype(np.float32)))
            tensors.append(("counts", route["counts"].astype(np.float32)))
            dropped = int((~route["kept"]).sum())
        tensors += sorted((k, v.numpy()) for k, v in grads.items() if k != "ddy")
        has_auxz = cfg["aux_coef"] > 0 or cfg["z_coef"] > 0
        p0 = dict(params, dy=np.zeros_like(params["dy"]))
        if has_auxz:
            # The gradient of L_aux + L_z alone (dy = 0): checks the router losses' backward
            # directly, not only as a small share of the full dWg and dx.
            _, g0 = forward(cfg, p0, route, torch.float32)
            auxz = {"auxz_" + k: g0[k] for k in ("dx", "dwg", "dbg") if k in g0}
            tensors += [(k, v.numpy()) for k, v in auxz.items()]
        path = os.path.join(args.out, name + ".bin")
        write_fixture(path, cfg_out, tensors)
        size = os.path.getsize(path)
        total += size
        print("%-30s %6d bytes  C=%d dropped=%d aux=%.6g z=%.6g" % (
            name, size, capacity(cfg), dropped, float(out["aux_loss"]), float(out["z_loss"])))
        if args.check64:
            out64, grads64 = forward(cfg, params, route, torch.float64)
            ref = dict(out, **grads)
            ref64 = dict(out64, **grads64)
            if has_auxz:
                ref.update(auxz)
                _, g064 = forward(cfg, p0, route, torch.float64)
                ref64.update({"auxz_" + k: g064[k] for k in ("dx", "dwg", "dbg") if k in g064})
            for k in sorted(k for k in ref if k != "ddy"):
                a, b = ref[k].double(), ref64[k]
                m = float(b.abs().max())
                err = float((a - b).abs().max())
                print("    %-16s f32-f64 max err %.3e  max|ref| %.3e  rel %.2e" % (
                    k, err, m, err / m if m > 0 else 0.0))
    print("total %d bytes in %s" % (total, args.out))


if __name__ == "__main__":
    main()
