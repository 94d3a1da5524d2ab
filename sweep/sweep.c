// sweep.c: a sweep file (moe.SweepConfig) into its runs — named points of --set overrides, the
// FLOP-matched dense baseline and the experts axis at fixed active parameters, each × seed — with
// every run's config loaded and validated up front, so a typo fails before the first launch.
// Trade-off: generated points are expressed as ordinary overrides (visible in --dry-run and in
// the command line), never as hidden config surgery.
#include "checkpoint.h"
#include "model.h"
#include "sweep-impl.h"
#include "train.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static char *moe_aprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *moe_aprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = moe_xcalloc((size_t)n + 1, 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void moe_sweep_free(moe_sweep *s) {
    if (!s) return;
    for (int i = 0; i < s->n_runs; i++) {
        moe_sweep_run *r = &s->runs[i];
        free(r->name);
        free(r->point);
        free(r->dir);
        for (int j = 0; j < r->n_sets; j++) free(r->sets[j]);
        free(r->sets);
        free(r->init_ck);
        if (r->cfg) moe_config_free(r->cfg);
    }
    free(s->runs);
    if (s->base_tmp) {
        unlink(s->base_tmp);
        free(s->base_tmp);
    }
    if (s->sc) protobuf_c_message_free_unpacked(&s->sc->base, NULL);
    free(s->path);
    free(s->base_path);
    free(s->out_dir);
    free(s);
}

static int moe_name_ok(const char *n) {
    if (!n || !*n || n[0] == '.' || strlen(n) > 100) return 0;
    for (const char *p = n; *p; p++)
        if (!strchr("._-", *p) && !(*p >= '0' && *p <= '9') && !(*p >= 'a' && *p <= 'z') &&
            !(*p >= 'A' && *p <= 'Z'))
            return 0;
    return 1;
}

// Adds one point (× every seed) with the sweep-wide sets, then `extra` (n_extra) overrides.
static void moe_sweep_add(moe_sweep *s, const char *point, const char *kind, char **extra,
                          int n_extra, const char *note, uint64_t base_seed) {
    const Moe__SweepConfig *sc = s->sc;
    const size_t n_seeds = sc->n_seeds ? sc->n_seeds : 1;
    for (size_t k = 0; k < n_seeds; k++) {
        const uint64_t seed = sc->n_seeds ? sc->seeds[k] : base_seed;
        moe_sweep_run *r = &s->runs[s->n_runs++];
        r->point = moe_xstrdup(point);
        r->kind = kind;
        r->seed = seed;
        r->name = moe_aprintf("%s-s%llu", point, (unsigned long long)seed);
        r->dir = moe_aprintf("%s/runs/%s", s->out_dir, r->name);
        r->sets = moe_xcalloc(sc->n_set + (size_t)n_extra + 2, sizeof *r->sets);
        for (size_t j = 0; j < sc->n_set; j++) r->sets[r->n_sets++] = moe_xstrdup(sc->set[j]);
        for (int j = 0; j < n_extra; j++) r->sets[r->n_sets++] = moe_xstrdup(extra[j]);
        r->sets[r->n_sets++] = moe_aprintf("train.seed=%llu", (unsigned long long)seed);
        snprintf(r->note, sizeof r->note, "%s", note ? note : "");
    }
}

static int64_t moe_gcd(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

// train.init_from of a run: found, the same model (its files are verified when the run starts);
// what it resolves to, with the manifest's CRC32C, into r->init_ck (sweep-run.json records it).
static moe_status moe_sweep_check_init(moe_sweep_run *r) {
    const char *from = r->cfg->train->init_from;
    if (!from || !from[0]) return MOE_OK;
    char dir[MOE_PATH_MAX];
    int64_t step = 0;
    moe_status st =
        moe_train_check_init_from(r->cfg, from, "train.init_from", 0, dir, sizeof dir, &step, NULL);
    Moe__CheckpointManifest *man = NULL;
    if (!st) st = moe_ckpt_read_manifest(dir, &man);
    if (st) return st;
    const uint32_t crc = man->has_file_crc32c ? man->file_crc32c : man->manifest_crc32c;
    r->init_ck = moe_aprintf("%s (step %lld, manifest CRC32C 0x%08x)", dir, (long long)step,
                             (unsigned)crc);
    protobuf_c_message_free_unpacked(&man->base, NULL);
    return MOE_OK;
}

// Loads base + sets for validation against `world`; on error, prefixes the run's name.
static moe_status moe_sweep_check_run(moe_sweep *s, moe_sweep_run *r) {
    char **all = moe_xcalloc((size_t)r->n_sets + 1, sizeof *all);
    for (int j = 0; j < r->n_sets; j++) all[j] = r->sets[j];
    char *od = moe_aprintf("out_dir=%s", r->dir); // as on the command line
    all[r->n_sets] = od;
    moe_status st = moe_config_load_with(s->base_tmp ? s->base_tmp : s->base_path,
                                         (const char *const *)all, r->n_sets + 1, s->np, &r->cfg);
    free(all);
    free(od);
    if (!st) st = moe_model_check(r->cfg);
    moe_params_report pr;
    if (!st) st = moe_params_count(r->cfg, s->np, 0, &pr);
    if (!st) st = moe_sweep_check_init(r);
    if (st) {
        return moe_set_error(MOE_EINVAL, "%s: point '%s' (run %s): %s", s->path, r->point, r->name,
                             moe_last_error());
    }
    r->active = pr.active, r->total = pr.total, r->flops = pr.flops_per_token;
    return MOE_OK;
}

// The shape figures generated points derive from, read from the base config with the sweep-wide
// overrides applied (validated).
typedef struct {
    int64_t D, F, Fe, Fs, E, K, Ns, ep, L_moe, L_dense;
    int strategy_set; // router.strategy is not the default (a dense baseline must reset it)
} moe_base_shape;

static moe_status moe_sweep_base_shape(moe_sweep *s, moe_base_shape *b) {
    const Moe__SweepConfig *sc = s->sc;
    Moe__Config *cfg = NULL;
    moe_status st = moe_config_load_with(s->base_tmp ? s->base_tmp : s->base_path,
                                         (const char *const *)sc->set, (int)sc->n_set, s->np, &cfg);
    if (st) {
        return moe_set_error(MOE_EINVAL, "%s: the base config with the sweep's \"set\": %s",
                             s->path, moe_last_error());
    }
    const Moe__ModelConfig *m = cfg->model;
    b->D = m->d_model;
    b->F = m->d_ff > 0 ? m->d_ff : 4 * m->d_model;
    b->Fe = m->expert_d_ff > 0 ? m->expert_d_ff : b->F;
    b->Fs = m->shared_expert_d_ff > 0 ? m->shared_expert_d_ff : b->Fe;
    b->E = m->n_experts, b->K = m->top_k, b->Ns = m->n_shared_experts;
    b->ep = cfg->parallel->ep_size;
    // Validation refuses any strategy but the default on a dense model, whatever the strategy.
    b->strategy_set = cfg->router->strategy != MOE__ROUTER_CONFIG__STRATEGY__token_choice;
    moe_params_report pr;
    st = moe_params_count(cfg, s->np, 0, &pr);
    b->L_moe = pr.n_moe_layers, b->L_dense = pr.n_dense_layers;
    moe_config_free(cfg);
    if (st) {
        return moe_set_error(MOE_EINVAL, "%s: base config: %s", s->path, moe_last_error());
    }
    return MOE_OK;
}

// Resolves `base` relative to the sweep file's directory (an absolute path stays as it is).
static char *moe_sweep_resolve(const char *sweep_path, const char *base) {
    if (base[0] == '/') return moe_xstrdup(base);
    const char *slash = strrchr(sweep_path, '/');
    if (!slash) return moe_xstrdup(base);
    return moe_aprintf("%.*s/%s", (int)(slash - sweep_path), sweep_path, base);
}

// launch.np, the base run (a file, or inline: validated through a temporary copy) and out_dir.
static moe_status moe_sweep_load_base(moe_sweep *s, const char *path, const char *out_override) {
    const Moe__SweepConfig *sc = s->sc;
    s->np = sc->launch && sc->launch->has_np ? sc->launch->np : 2;
    if (s->np < 1 || s->np > 4096) {
        return moe_set_error(
            MOE_EINVAL, "%s: launch.np = %d: expected a number of ranks in [1, 4096]", path, s->np);
    }
    if ((sc->base_file && sc->base_file[0]) == (sc->base_config != NULL)) {
        return moe_set_error(MOE_EINVAL,
                             "%s: give the base run either as \"base_file\": \"CONFIG.json\" "
                             "(a path relative to the sweep file) or inline as \"base_config\": "
                             "{...}, %s",
                             path, sc->base_config ? "not both" : "one of them is required");
    }
    s->out_dir = moe_xstrdup(out_override ? out_override : sc->out_dir);
    if (sc->base_file && sc->base_file[0]) {
        s->base_path = moe_sweep_resolve(path, sc->base_file);
        if (!moe_file_exists(s->base_path)) {
            return moe_set_error(MOE_EINVAL,
                                 "%s: base_file \"%s\": %s does not exist (a relative "
                                 "base_file is read from the sweep file's directory)",
                                 path, sc->base_file, s->base_path);
        }
        char cwd[MOE_PATH_MAX]; // absolute, so the command line names it unambiguously
        if (s->base_path[0] != '/' && getcwd(cwd, sizeof cwd)) {
            char *abs = moe_aprintf("%s/%s", cwd, s->base_path);
            free(s->base_path);
            s->base_path = abs;
        }
    } else { // inline: a temporary copy to validate now; OUT/base.json is what runs will read
        s->base_path = moe_aprintf("%s/base.json", s->out_dir);
        char tmpl[] = "/tmp/moe-sweep-base-XXXXXX";
        int fd = mkstemp(tmpl);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f || moe_json_write_message(f, &sc->base_config->base, 0) != MOE_OK) {
            if (f) fclose(f);
            return moe_set_error(MOE_EIO, "cannot write a temporary copy of the inline base (%s)",
                                 strerror(errno));
        }
        fclose(f);
        s->base_tmp = moe_xstrdup(tmpl);
    }
    return MOE_OK;
}

// The FLOP-matched dense baseline: same FFN FLOPs per token over the whole stack.
static void moe_sweep_add_dense(moe_sweep *s, const moe_base_shape *sh, uint64_t base_seed) {
    const moe_base_shape b = *sh;
    // Same FFN FLOPs per token over the whole stack: every layer of the dense model gets
    // width F' with L·F' = L_moe·(K·Fe + Ns·Fs) + L_dense·F (rounded to the nearest integer).
    const int64_t L = b.L_moe + b.L_dense;
    const int64_t num = b.L_moe * (b.K * b.Fe + b.Ns * b.Fs) + b.L_dense * b.F;
    const int64_t Fd = (num + L / 2) / L;
    char *ex[6];
    int ne = 0;
    ex[ne++] = moe_xstrdup("model.n_experts=0");
    if (b.Ns) ex[ne++] = moe_xstrdup("model.n_shared_experts=0");
    ex[ne++] = moe_aprintf("model.d_ff=%lld", (long long)Fd);
    if (b.ep != 1) ex[ne++] = moe_xstrdup("parallel.ep_size=1");
    if (b.strategy_set) ex[ne++] = moe_xstrdup("router.strategy=token_choice");
    char note[256];
    snprintf(note, sizeof note,
             "dense FFN width %lld = (%lld MoE layers × (top_k %lld × "
             "expert_d_ff %lld + %lld shared × %lld) + %lld dense layers × %lld) / %lld layers",
             (long long)Fd, (long long)b.L_moe, (long long)b.K, (long long)b.Fe, (long long)b.Ns,
             (long long)b.Fs, (long long)b.L_dense, (long long)b.F, (long long)L);
    moe_sweep_add(s, "dense", "dense", ex, ne, note, base_seed);
    for (int j = 0; j < ne; j++) free(ex[j]);
}

// The experts axis: one point per entry, active expert width per token held fixed.
static moe_status moe_sweep_add_experts_axis(moe_sweep *s, const char *path,
                                             const moe_base_shape *sh, uint64_t base_seed) {
    const Moe__SweepConfig *sc = s->sc;
    const moe_base_shape b = *sh;
    for (size_t i = 0; i < sc->n_experts_axis; i++) {
        const int64_t E = sc->experts_axis[i];
        if (E < 1 || E > 65536) {
            return moe_set_error(MOE_EINVAL,
                                 "%s: experts_axis[%zu] = %lld: expected a number of "
                                 "experts in [1, 65536]",
                                 path, i, (long long)E);
        }
        for (size_t j = 0; j < i; j++)
            if (sc->experts_axis[j] == E) {
                return moe_set_error(MOE_EINVAL,
                                     "%s: experts_axis[%zu] = %lld repeats "
                                     "experts_axis[%zu]",
                                     path, i, (long long)E, j);
            }
        // Active expert width per token K·Fe is held fixed. With fewer experts than top_k, each
        // token takes all E experts, each widened to K·Fe/E.
        int64_t K = b.K, Fe = b.Fe;
        if (E < b.K) {
            if ((b.K * b.Fe) % E) {
                return moe_set_error(
                    MOE_EINVAL,
                    "%s: experts_axis[%zu] = %lld < top_k = %lld needs "
                    "top_k × expert_d_ff = %lld divisible by %lld to keep the active "
                    "parameters; change expert_d_ff or drop this entry",
                    path, i, (long long)E, (long long)b.K, (long long)(b.K * b.Fe), (long long)E);
            }
            K = E, Fe = b.K * b.Fe / E;
        }
        const int64_t ep = b.ep > 0 && E % b.ep ? moe_gcd(b.ep, E) : b.ep;
        char *ex[5], name[64], note[256];
        int ne = 0;
        ex[ne++] = moe_aprintf("model.n_experts=%lld", (long long)E);
        if (K != b.K) ex[ne++] = moe_aprintf("model.top_k=%lld", (long long)K);
        if (Fe != b.Fe) ex[ne++] = moe_aprintf("model.expert_d_ff=%lld", (long long)Fe);
        if (ep != b.ep) ex[ne++] = moe_aprintf("parallel.ep_size=%lld", (long long)ep);
        snprintf(name, sizeof name, "experts-%lld", (long long)E);
        snprintf(note, sizeof note, "%lld experts, top_k %lld × expert_d_ff %lld%s", (long long)E,
                 (long long)K, (long long)Fe, ep != b.ep ? " (ep_size lowered to divide E)" : "");
        moe_sweep_add(s, name, "experts", ex, ne, note, base_seed);
        for (int j = 0; j < ne; j++) free(ex[j]);
    }
    return MOE_OK;
}

moe_status moe_sweep_load(const char *path, const char *out_override, moe_sweep **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    moe_status st = moe_read_file(path, 0, &text, &len);
    if (st) {
        return moe_set_error(MOE_EINVAL, "%s; check the sweep file's path", moe_last_error());
    }
    moe_sweep *s = moe_xcalloc(1, sizeof *s);
    s->path = moe_xstrdup(path);
    ProtobufCMessage *m = NULL;
    st = moe_json_parse_message(path, text, len, &moe__sweep_config__descriptor, &m);
    free(text);
    if (st) goto fail;
    s->sc = (Moe__SweepConfig *)m;
    Moe__SweepConfig *sc = s->sc;
    if ((st = moe_sweep_load_base(s, path, out_override))) goto fail;
    // ------------------------------------------------ the grid
    const size_t n_seeds = sc->n_seeds ? sc->n_seeds : 1;
    const size_t n_points = sc->n_points + (sc->dense_baseline ? 1 : 0) + sc->n_experts_axis;
    if (n_points == 0) {
        st = moe_set_error(MOE_EINVAL,
                           "%s: the grid is empty: give \"points\": [{\"name\": ..., "
                           "\"set\": [...]}], \"dense_baseline\": true or \"experts_axis\": [...]",
                           path);
        goto fail;
    }
    for (size_t i = 0; i < sc->n_seeds; i++)
        for (size_t j = 0; j < i; j++)
            if (sc->seeds[i] == sc->seeds[j]) {
                st = moe_set_error(MOE_EINVAL, "%s: seeds[%zu] = %llu repeats seeds[%zu]", path, i,
                                   (unsigned long long)sc->seeds[i], j);
                goto fail;
            }
    s->runs = moe_xcalloc(n_points * n_seeds, sizeof *s->runs);
    Moe__Config *probe = NULL; // the base seed, for runs named without explicit seeds
    if ((st = moe_config_load_with(s->base_tmp ? s->base_tmp : s->base_path,
                                   (const char *const *)sc->set, (int)sc->n_set, 0, &probe))) {
        st = moe_set_error(MOE_EINVAL, "%s: the base config with the sweep's \"set\": %s", path,
                           moe_last_error());
        goto fail;
    }
    const uint64_t base_seed = probe->train->seed;
    moe_config_free(probe);
    for (size_t i = 0; i < sc->n_points; i++) {
        const Moe__SweepPoint *p = sc->points[i];
        if (!moe_name_ok(p->name)) {
            st = moe_set_error(MOE_EINVAL,
                               "%s: points[%zu].name = \"%s\": give each point a name "
                               "of letters, digits, '.', '_' or '-' (not starting with '.'; it "
                               "names the run directory)",
                               path, i, p->name ? p->name : "");
            goto fail;
        }
        moe_sweep_add(s, p->name, "point", p->set, (int)p->n_set, NULL, base_seed);
    }
    moe_base_shape b = {0};
    if ((sc->dense_baseline || sc->n_experts_axis) && (st = moe_sweep_base_shape(s, &b))) goto fail;
    if ((sc->dense_baseline || sc->n_experts_axis) && b.E <= 0) {
        st = moe_set_error(MOE_EINVAL,
                           "%s: dense_baseline and experts_axis are derived from a MoE "
                           "base, but the base has model.n_experts = 0; set n_experts > 0 in the "
                           "base",
                           path);
        goto fail;
    }
    if (sc->dense_baseline) moe_sweep_add_dense(s, &b, base_seed);
    if ((st = moe_sweep_add_experts_axis(s, path, &b, base_seed))) goto fail;
    for (int i = 0; i < s->n_runs; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(s->runs[i].name, s->runs[j].name)) {
                st = moe_set_error(MOE_EINVAL,
                                   "%s: two runs are named %s (point names must be "
                                   "unique; \"dense\" and \"experts-E\" are taken by the generated "
                                   "points)",
                                   path, s->runs[i].name);
                goto fail;
            }
    for (int i = 0; i < s->n_runs; i++) // the run directory is the run's out_dir: it must fit
        if ((st = moe_dir_check("run directory", s->runs[i].dir)) ||
            (st = moe_sweep_check_run(s, &s->runs[i])))
            goto fail;
    *out = s;
    return MOE_OK;
fail:
    moe_sweep_free(s);
    return st ? st : MOE_EINVAL;
}

// ---------------------------------------------------------------- stale runs

static json_t *moe_cfg_json(const Moe__Config *c) {
    char *t = moe_json_format_message(&c->base, MOE_JSON_DEFAULTS | MOE_JSON_COMPACT);
    json_t *j = t ? json_loads(t, 0, NULL) : NULL;
    free(t);
    MOE_ASSERT(j); // the writer's own output, in memory: only out of memory stops it
    return j;
}

// One "path: old -> new" item of l per differing leaf of a and b (objects: JSON of two configs);
// an object or value absent on one side counts as its schema default (`def`).
static int moe_json_diff(const char *prefix, json_t *a, json_t *b, json_t *def, moe_list *l) {
    int n = 0;
    json_t *keys = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(a, k, v) json_object_set(keys, k, json_true());
    json_object_foreach(b, k, v) json_object_set(keys, k, json_true());
    json_object_foreach(keys, k, v) {
        if (!prefix[0] && !strcmp(k, "out_dir")) continue; // where the run lives, not what it does
        json_t *d = def ? json_object_get(def, k) : NULL;
        json_t *x = json_object_get(a, k), *y = json_object_get(b, k);
        x = x ? x : d, y = y ? y : d;
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", k);
        if ((x && json_is_object(x)) || (y && json_is_object(y))) {
            json_t *ex = json_object();
            n += moe_json_diff(path, x && json_is_object(x) ? x : ex,
                               y && json_is_object(y) ? y : ex, d, l);
            json_decref(ex);
            continue;
        }
        if (x && y && json_equal(x, y)) continue;
        char *sx = x ? json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        char *sy = y ? json_dumps(y, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        moe_list_add(l, "%s: %s -> %s", path, sx ? sx : "(unset)", sy ? sy : "(unset)");
        free(sx);
        free(sy);
        n++;
    }
    json_decref(keys);
    return n;
}

int moe_sweep_run_changed(const moe_sweep_run *r, char *diff, size_t cap) {
    char path[MOE_PATH_MAX], *text = NULL;
    size_t len = 0;
    diff[0] = 0;
    snprintf(path, sizeof path, "%s/sweep-run.json", r->dir);
    ProtobufCMessage *m = NULL;
    if (!moe_file_exists(path) || moe_read_file(path, 0, &text, &len) ||
        moe_json_parse_message(path, text, len, &moe__sweep_run__descriptor, &m) ||
        !((Moe__SweepRun *)m)->config) {
        snprintf(diff, cap,
                 "    %s is missing or unreadable, or holds no config: what the run computed is "
                 "unknown\n",
                 path);
        moe_clear_error();
        free(text);
        if (m) protobuf_c_message_free_unpacked(m, NULL);
        return 1;
    }
    int n = moe_config_diff(((Moe__SweepRun *)m)->config, r->cfg, diff, cap);
    const char *was = ((Moe__SweepRun *)m)->init_checkpoint, *now = r->init_ck;
    was = was && was[0] ? was : NULL;
    if ((was || now) && (!was || !now || strcmp(was, now))) { // other weights at step 0
        const size_t at = strlen(diff);
        snprintf(diff + at, cap - at, "    train.init_from's checkpoint: %s -> %s\n",
                 was ? was : "(none)", now ? now : "(none)");
        n++;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    free(text);
    return n;
}

int moe_config_diff(const Moe__Config *a, const Moe__Config *b, char *diff, size_t cap) {
    Moe__Config *def_cfg = moe_config_new_default();
    MOE_ASSERT(def_cfg);
    json_t *was = moe_cfg_json(a), *now = moe_cfg_json(b);
    json_t *def = moe_cfg_json(def_cfg);
    // "    a: x -> y\n    b: ...\n": the list is kept one byte short for the last newline.
    moe_list l;
    snprintf(diff, cap, "    ");
    moe_list_start(&l, diff, cap - 1, "\n    ");
    const int n = moe_json_diff("", was, now, def, &l);
    moe_list_end(&l);
    if (n)
        diff[l.len] = '\n', diff[l.len + 1] = '\0';
    else
        diff[0] = '\0';
    json_decref(was);
    json_decref(now);
    json_decref(def);
    moe_config_free(def_cfg);
    return n;
}
