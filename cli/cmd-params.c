// cmd-params.c: `moe params CONFIG` — total and active parameters per component, FLOPs per token
// and fp32 bytes per rank, for a moe config or a Hugging Face config.json, as a table or --json.
// Only printing lives here; every number comes from moe_params_count (params/params.c).
#include "config.h"
#include "cli.h"
#include "moe-args.h"
#include "params.h"

#include <jansson.h>
#include <limits.h>
#include <string.h>

// 46702792704 -> "46,702,792,704"
static const char *params_grouped(int64_t v, char *buf, size_t cap) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v));
    size_t n = strlen(digits), o = 0;
    if (v < 0 && o + 1 < cap) buf[o++] = '-';
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

// Counts in billions ("46.70B"), or millions/thousands for small models.
static const char *params_short(int64_t v, char *buf, size_t cap) {
    double x = (double)v;
    if (x >= 1e9)
        snprintf(buf, cap, "%.2fB", x / 1e9);
    else if (x >= 1e6)
        snprintf(buf, cap, "%.2fM", x / 1e6);
    else if (x >= 1e3)
        snprintf(buf, cap, "%.2fK", x / 1e3);
    else
        snprintf(buf, cap, "%lld", (long long)v);
    return buf;
}

static void params_print_table(FILE *f, const char *path, int hf, const moe_hf_info *info,
                               const Moe__Config *cfg, const moe_params_report *r) {
    char a[40], b[40], c[40], d[40];
    const Moe__ModelConfig *m = cfg->model;
    fprintf(f, "%s: %s\n", path, hf ? "Hugging Face config.json" : "moe config");
    if (hf) fprintf(f, "  read as %s\n", info->family);
    fprintf(f, "  %d layers (%d MoE, %d dense), d_model %lld, vocab %lld", r->n_layers,
            r->n_moe_layers, r->n_dense_layers, (long long)m->d_model, (long long)m->vocab_size);
    if (m->n_experts > 0)
        fprintf(f, ", %d experts top-%d, %d shared", m->n_experts, m->top_k, m->n_shared_experts);
    fprintf(f, "%s\n", m->kv_lora_rank > 0 ? ", MLA attention" : "");
    if (r->n_experts > 0) {
        const char *gs =
            r->group_score == MOE__ROUTER_CONFIG__GROUP_SCORE__max ? "max" : "top2_sum";
        fprintf(f, "  routing: top-%d of %d experts", r->top_k, r->n_experts);
        if (r->n_group)
            fprintf(f,
                    " within %d of %d groups (group score %s; %lld experts reachable per token; "
                    "active parameters unchanged)",
                    r->topk_group, r->n_group, gs, (long long)r->reachable_experts);
        else if (r->node_limited)
            fprintf(f,
                    " within %d node(s) of the EP group (node-limited: groups = nodes, fixed at "
                    "setup; group score %s; active parameters unchanged)",
                    r->topk_group, gs);
        fprintf(f, "\n");
    }
    fprintf(f, "\n");

    fprintf(f, "  %-16s %20s %20s\n", "component", "total", "active/token");
    for (int i = 0; i < MOE_PARAMS_N_PARTS; i++)
        fprintf(f, "  %-16s %20s %20s\n", moe_params_part_name((moe_params_part_id)i),
                params_grouped(r->part[i].total, a, sizeof a),
                params_grouped(r->part[i].active, b, sizeof b));
    fprintf(f, "  %-16s %20s %20s\n", "total", params_grouped(r->total, a, sizeof a),
            params_grouped(r->active, b, sizeof b));
    fprintf(f, "  %-16s %20s %20s\n", "", params_short(r->total, a, sizeof a),
            params_short(r->active, b, sizeof b));
    fprintf(f, "\n  active/total        %.4f (%.2f%%)\n", r->active_ratio, 100.0 * r->active_ratio);
    fprintf(f, "  active w/o embed    %s (%s)\n",
            params_grouped(r->active_nonembedding, a, sizeof a),
            params_short(r->active_nonembedding, b, sizeof b));
    if (r->untrained)
        fprintf(f, "  balancing bias      %s (in total and active; state, not trained)\n",
                params_grouped(r->untrained, a, sizeof a));
    if (r->lora_total)
        fprintf(f, "  LoRA adapters       %s total, %s active/token (not in the totals above)\n",
                params_grouped(r->lora_total, a, sizeof a),
                params_grouped(r->lora_active, b, sizeof b));
    fprintf(f, "  trainable           %s (%s)\n", params_grouped(r->trainable, a, sizeof a),
            params_short(r->trainable, b, sizeof b));
    fprintf(f, "  frozen              %s (%s)\n", params_grouped(r->frozen, a, sizeof a),
            params_short(r->frozen, b, sizeof b));

    fprintf(f,
            "\n  forward FLOPs/token %s (%.3g GFLOP; 2 x active matmul weights, head included)\n",
            params_grouped(r->flops_per_token, a, sizeof a), (double)r->flops_per_token / 1e9);
    fprintf(f, "  attention FLOPs/token at seq_len %d: %s full context, %s causal average\n",
            r->seq_len, params_grouped(r->attn_flops_per_token, a, sizeof a),
            params_grouped(r->attn_flops_per_token_causal, b, sizeof b));
    fprintf(f, "    (QK^T and AV: 2*S*H*(Dqk+Dv) per layer; causal: (S+1)*H*(Dqk+Dv))\n");

    double gib = 1024.0 * 1024.0 * 1024.0;
    fprintf(f, "\n  per rank (world %d = ep %d x edp %d; fp32; routed experts split over ep):\n",
            r->world, r->ep, r->edp);
    fprintf(f, "    %-14s %20s %20s %12s\n", "", "entries", "bytes", "GiB");
    fprintf(f, "    %-14s %20s %20s %12.2f\n", "parameters",
            params_grouped(r->rank_params, a, sizeof a),
            params_grouped(r->rank_param_bytes, b, sizeof b), (double)r->rank_param_bytes / gib);
    fprintf(f, "    %-14s %20s %20s %12.2f\n", "gradients",
            params_grouped(r->rank_trainable, c, sizeof c),
            params_grouped(r->rank_grad_bytes, d, sizeof d), (double)r->rank_grad_bytes / gib);
    fprintf(f, "    %-14s %20s %20s %12.2f\n", "AdamW m, v",
            params_grouped(2 * r->rank_trainable, a, sizeof a),
            params_grouped(r->rank_adam_bytes, b, sizeof b), (double)r->rank_adam_bytes / gib);
    fprintf(f, "    %-14s %20s %20s %12.2f\n", "total", "",
            params_grouped(r->rank_bytes, c, sizeof c), (double)r->rank_bytes / gib);
    if (r->lora_total) {
        const int64_t lora = r->rank_grad_bytes + r->rank_adam_bytes;
        fprintf(f,
                "    LoRA: gradients + AdamW %s bytes instead of %s for full fine-tuning "
                "(%s bytes, %.1f%%, saved by the frozen base)\n",
                params_grouped(lora, a, sizeof a),
                params_grouped(r->rank_full_state_bytes, b, sizeof b),
                params_grouped(r->rank_full_state_bytes - lora, c, sizeof c),
                r->rank_full_state_bytes
                    ? 100.0 * (double)(r->rank_full_state_bytes - lora) /
                          (double)r->rank_full_state_bytes
                    : 0.0);
    }
}

static json_t *params_json(const char *path, int hf, const moe_hf_info *info,
                           const moe_params_report *r) {
    json_t *o = json_object();
#define JI(obj, key, v) json_object_set_new(obj, key, json_integer((json_int_t)(v)))
    json_object_set_new(o, "config", json_string(path));
    json_object_set_new(o, "format", json_string(hf ? "huggingface" : "moe"));
    if (hf) json_object_set_new(o, "hf_family", json_string(info->family));
    JI(o, "total_params", r->total);
    JI(o, "active_params", r->active);
    JI(o, "active_params_nonembedding", r->active_nonembedding);
    json_object_set_new(o, "active_ratio", json_real(r->active_ratio));
    JI(o, "trainable_params", r->trainable);
    JI(o, "frozen_params", r->frozen);
    JI(o, "untrained_params", r->untrained);
    JI(o, "lora_params", r->lora_total);
    JI(o, "lora_active_params", r->lora_active);
    JI(o, "flops_per_token", r->flops_per_token);
    JI(o, "attn_flops_per_token", r->attn_flops_per_token);
    JI(o, "attn_flops_per_token_causal", r->attn_flops_per_token_causal);
    JI(o, "seq_len", r->seq_len);
    JI(o, "n_layers", r->n_layers);
    JI(o, "n_moe_layers", r->n_moe_layers);
    JI(o, "n_dense_layers", r->n_dense_layers);
    JI(o, "n_experts", r->n_experts);
    JI(o, "top_k", r->top_k);
    JI(o, "n_group", r->n_group);
    JI(o, "topk_group", r->topk_group);
    json_object_set_new(o, "node_limited", json_boolean(r->node_limited));
    json_object_set_new(
        o, "group_score",
        json_string(r->group_score == MOE__ROUTER_CONFIG__GROUP_SCORE__max ? "max" : "top2_sum"));
    JI(o, "reachable_experts", r->reachable_experts);
    JI(o, "world", r->world);
    JI(o, "ep", r->ep);
    JI(o, "edp", r->edp);
    JI(o, "per_rank_params", r->rank_params);
    JI(o, "per_rank_trainable", r->rank_trainable);
    JI(o, "per_rank_param_bytes", r->rank_param_bytes);
    JI(o, "per_rank_grad_bytes", r->rank_grad_bytes);
    JI(o, "per_rank_adam_bytes", r->rank_adam_bytes);
    JI(o, "per_rank_bytes", r->rank_bytes);
    JI(o, "per_rank_full_finetune_state_bytes", r->rank_full_state_bytes);
    json_t *parts = json_object();
    for (int i = 0; i < MOE_PARAMS_N_PARTS; i++) {
        const moe_params_part *p = &r->part[i];
        json_t *q = json_object();
        JI(q, "total", p->total);
        JI(q, "active", p->active);
        JI(q, "matmul", p->matmul);
        JI(q, "untrained", p->untrained);
        JI(q, "per_rank", p->per_rank);
        JI(q, "lora_total", p->lora_total);
        JI(q, "lora_active", p->lora_active);
        JI(q, "lora_per_rank", p->lora_per_rank);
        json_object_set_new(parts, moe_params_part_name((moe_params_part_id)i), q);
    }
    json_object_set_new(o, "components", parts);
    json_t *ign = json_array(), *notes = json_array();
    for (size_t i = 0; hf && i < info->n_ignored; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "field", json_string(info->ignored[i]));
        json_object_set_new(e, "reason", json_string(info->ignored_reason[i]));
        json_array_append_new(ign, e);
    }
    for (size_t i = 0; hf && i < info->n_notes; i++)
        json_array_append_new(notes, json_string(info->notes[i]));
    json_object_set_new(o, "ignored_hf_fields", ign);
    json_object_set_new(o, "notes", notes);
#undef JI
    return o;
}

int moe_cmd_params(int argc, char **argv) {
    const char *path = NULL;
    moe_args_list set_args = {0};
    int world = 0, ep = 0, as_json = 0, rc = MOE_EXIT_USAGE;
    Moe__Config *cfg = NULL;
    moe_hf_info info = {0};
    int hf = 0;
    const moe_arg_pos pos[] = {
        {"CONFIG", MOE_ARG_STRING, &path, 1, 1,
         "a moe config (JSON, '-' for stdin) or a Hugging Face config.json"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_LIST("--set", &set_args, "a.b=v",
                     "override a config field, e.g. --set train.seq_len=4096"),
        MOE_OPT_INT("--world", &world, "N", 1, INT_MAX,
                    "ranks for the per-rank figures (default: ep)"),
        MOE_OPT_INT("--ep", &ep, "N", 1, INT_MAX,
                    "expert-parallel size (default: parallel.ep_size); N must divide\n"
                    "n_experts and the world size"),
        MOE_OPT_FLAG("--json", &as_json, "one JSON object on stdout instead of the table"),
    };
    const moe_args_spec spec = {
        "moe params",
        "Counts the parameters of a model exactly: per component (embeddings, attention, norms,\n"
        "router, routed experts, shared experts, dense FFN, head) in total and active per token\n"
        "(top_k of n_experts routed experts; everything else, embeddings included, in full),\n"
        "forward FLOPs per token, attention FLOPs at train.seq_len, and the fp32 bytes one rank\n"
        "holds for parameters, gradients and AdamW m and v. With LoRA (lora.rank > 0) only the\n"
        "adapters (and the router / norms with lora.train_router / train_norms) are trainable,\n"
        "and the bytes saved against full fine-tuning are printed. Conventions: docs/params.md.\n"
        "\n"
        "CONFIG is a moe config (JSON, '-' for stdin) or a Hugging Face config.json (Mixtral,\n"
        "Qwen2-MoE, Qwen3-MoE, DeepSeek-V2/V3, OLMoE); HF fields that do not map onto the\n"
        "shape are listed as ignored on stderr (or under \"ignored_hf_fields\" with --json).",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 ok, 2 bad usage, unreadable or invalid config, impossible layout"};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    // The --set values, then --ep as one more.
    const char **sets = moe_xcalloc((size_t)set_args.n + 2, sizeof *sets);
    int n_sets = 0;
    for (int i = 0; i < set_args.n; i++) sets[n_sets++] = set_args.v[i];

    // --ep overrides parallel.ep_size like a --set, before validation.
    char ep_set[64];
    if (ep > 0) {
        snprintf(ep_set, sizeof ep_set, "parallel.ep_size=%d", ep);
        sets[n_sets++] = ep_set;
    }
    // Shape and layout are checked here and by moe_params_count; the world-dependent training
    // checks (batch divisibility) do not concern a parameter count.
    moe_status st = moe_model_config_load(path, sets, n_sets, &cfg, &info, &hf);
    moe_params_report r;
    if (!st) st = moe_params_count(cfg, world, ep, &r);
    if (st) {
        fprintf(stderr, "moe params: %s\n", moe_last_error());
        rc = MOE_EXIT_USAGE;
        goto out;
    }
    if (hf && !as_json) {
        // Known fields on one line (their reasons are in --json); unknown ones one by one.
        int n_known = 0;
        for (size_t i = 0; i < info.n_ignored; i++) {
            if (strncmp(info.ignored_reason[i], "known", 5)) continue;
            if (n_known++ == 0)
                fprintf(stderr,
                        "moe params: %s: ignored known HF fields (no effect on parameter "
                        "shapes; reasons with --json): %s",
                        path, info.ignored[i]);
            else
                fprintf(stderr, ", %s", info.ignored[i]);
        }
        if (n_known) fputc('\n', stderr);
        for (size_t i = 0; i < info.n_ignored; i++)
            if (strncmp(info.ignored_reason[i], "known", 5))
                fprintf(stderr, "moe params: %s: ignored HF field \"%s\" (%s)\n", path,
                        info.ignored[i], info.ignored_reason[i]);
        for (size_t i = 0; i < info.n_notes; i++)
            fprintf(stderr, "moe params: %s: note: %s\n", path, info.notes[i]);
    }
    if (as_json) {
        json_t *o = params_json(path, hf, &info, &r);
        json_dumpf(o, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        params_print_table(stdout, path, hf, &info, cfg, &r);
    }
    rc = MOE_EXIT_OK;
out:
    moe_config_free(cfg);
    moe_hf_info_free(&info);
    free(sets);
    moe_args_free(&spec);
    return rc;
}
