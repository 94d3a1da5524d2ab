// topo.c: machine topology and CPU binding through hwloc, the BLAS-threads recommendation, and the
// `moe topo` report (every rank's binding gathered to rank 0). Overlap between ranks is judged on
// the first 256 PUs of each binding: enough for the nodes we target, and a fixed-size record.
#include "comm-impl.h"

#include <hwloc.h>
#include <string.h>

enum { MOE_TOPO_MASK_WORDS = 256 / (8 * sizeof(unsigned long)) };

// Query with the binding's PU mask (first 256 PUs) for overlap checks.
static moe_status moe_comm_topo_query_mask(moe_comm_topo *t, unsigned long *mask) {
    memset(t, 0, sizeof *t);
    t->first_pu = -1;
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0)
        return moe_set_error(MOE_EIO,
                             "hwloc_topology_init failed: cannot read the machine topology");
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        return moe_set_error(MOE_EIO,
                             "hwloc_topology_load failed: cannot read the machine topology");
    }
    t->packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
    t->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    t->pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    t->numa_nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    if (t->cores <= 0) t->cores = t->pus; // some virtual machines expose no core level
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(topo);
    if (!set || (hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) != 0 &&
                 hwloc_get_cpubind(topo, set, 0) != 0))
        hwloc_bitmap_copy(set, all); // binding unknown: treat as unbound
    hwloc_bitmap_and(set, set, all);
    t->bound = !hwloc_bitmap_isincluded(all, set);
    t->bound_pus = hwloc_bitmap_weight(set);
    t->first_pu = hwloc_bitmap_first(set);
    t->bound_cores = hwloc_get_nbobjs_inside_cpuset_by_type(topo, set, HWLOC_OBJ_CORE);
    if (t->bound_cores <= 0 && hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) <= 0)
        t->bound_cores = t->bound_pus;
    hwloc_bitmap_list_snprintf(t->cpuset, sizeof t->cpuset, set);
    if (mask) {
        memset(mask, 0, MOE_TOPO_MASK_WORDS * sizeof(unsigned long));
        hwloc_bitmap_to_ulongs(set, MOE_TOPO_MASK_WORDS, mask);
    }
    hwloc_bitmap_free(set);
    hwloc_topology_destroy(topo);
    return MOE_OK;
}

moe_status moe_comm_topo_query(moe_comm_topo *out) { return moe_comm_topo_query_mask(out, NULL); }

static int moe_comm_masks_overlap(const unsigned long *a, const unsigned long *b) {
    for (int i = 0; i < MOE_TOPO_MASK_WORDS; i++)
        if (a[i] & b[i]) return 1;
    return 0;
}

// Threads from the environment, or 0 if OPENBLAS_NUM_THREADS is unset or not a positive integer.
static int moe_comm_env_threads(void) {
    const char *s = getenv("OPENBLAS_NUM_THREADS");
    if (!s || !*s) return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return (*end == '\0' && v >= 1 && v <= 4096) ? (int)v : 0;
}

// Cores this rank owns given the node's masks; `sharing` = ranks whose binding overlaps mine.
static int moe_comm_owned_cores(const moe_comm_topo *t, int node_size, int sharing) {
    int n = t->bound ? t->bound_cores / (sharing > 0 ? sharing : 1) : t->cores / node_size;
    return n >= 1 ? n : 1;
}

moe_status moe_comm_blas_threads(const moe_comm *c, int *threads) {
    moe_comm_topo t;
    const int q = c->info.node_size;
    unsigned long mine[MOE_TOPO_MASK_WORDS];
    unsigned long *all = moe_xcalloc((size_t)q * MOE_TOPO_MASK_WORDS, sizeof(unsigned long));
    moe_status st = moe_comm_topo_query_mask(&t, mine);
    // Collective either way: a rank whose query failed still takes part, with an empty mask.
    if (st != MOE_OK) memset(mine, 0, sizeof mine);
    int rc = MPI_Allgather(mine, MOE_TOPO_MASK_WORDS, MPI_UNSIGNED_LONG, all, MOE_TOPO_MASK_WORDS,
                           MPI_UNSIGNED_LONG, moe_comm_mpi(c, MOE_COMM_NODE));
    if (rc != MPI_SUCCESS && st == MOE_OK)
        st = moe_comm_mpi_error("MPI_Allgather(cpu masks)", rc, __FILE__, __LINE__);
    int sharing = 0;
    for (int r = 0; r < q && st == MOE_OK; r++)
        sharing += moe_comm_masks_overlap(mine, all + (size_t)r * MOE_TOPO_MASK_WORDS);
    free(all);
    int env = moe_comm_env_threads();
    *threads = env ? env : (st == MOE_OK ? moe_comm_owned_cores(&t, q, sharing) : 1);
    return st;
}

// What each rank sends to rank 0 for the report.
typedef struct {
    int node, node_rank, node_size, ep_index, ep_rank, edp_rank, blas, ok;
    moe_comm_topo t;
    unsigned long mask[MOE_TOPO_MASK_WORDS];
    char host[64];
} moe_comm_rank_rec;

// Ends a group's line with the nodes it spans (by host name) and whether `what` crosses a link:
// kind 0 = EP group g (ep_index), 1 = EDP group g (ep_rank), 2 = the whole world.
static void moe_topo_print_span(FILE *f, const moe_comm_rank_rec *all, int W, int kind, int g,
                                const char *what) {
    int n = 0;
    for (int r = 0; r < W; r++) {
        int in = kind == 0 ? all[r].ep_index == g : kind == 1 ? all[r].ep_rank == g : 1;
        if (!in) continue;
        int seen = 0;
        for (int s = 0; s < r && !seen; s++) {
            int sin = kind == 0 ? all[s].ep_index == g : kind == 1 ? all[s].ep_rank == g : 1;
            seen = sin && all[s].node == all[r].node;
        }
        if (seen) continue;
        fprintf(f, "%s%s", n ? ", " : "   on ", all[r].host);
        n++;
    }
    if (n > 1)
        fprintf(f, ": %s crosses a link between %d nodes\n", what, n);
    else
        fprintf(f, ": %s stays in the node\n", what);
}

moe_status moe_comm_topo_report(const moe_comm *c, FILE *f) {
    const int W = c->info.world_size, me = c->info.world_rank;
    moe_comm_rank_rec rec, *all = NULL;
    memset(&rec, 0, sizeof rec);
    moe_status st = moe_comm_topo_query_mask(&rec.t, rec.mask);
    rec.ok = st == MOE_OK;
    int blas = 1;
    moe_status st2 = moe_comm_blas_threads(c, &blas);
    if (st == MOE_OK) st = st2;
    rec.blas = blas;
    rec.node = c->info.node_index;
    rec.node_rank = c->info.node_rank;
    rec.node_size = c->info.node_size;
    rec.ep_index = c->info.ep_index;
    rec.ep_rank = c->info.ep_rank;
    rec.edp_rank = c->info.edp_rank;
    int len = 0;
    char host[MPI_MAX_PROCESSOR_NAME];
    if (MPI_Get_processor_name(host, &len) != MPI_SUCCESS) snprintf(host, sizeof host, "?");
    host[sizeof rec.host - 1] = 0; // keep the first 63 characters
    memcpy(rec.host, host, sizeof rec.host);
    char xov_msg[512];
    const int xov = moe_comm_cross_node_cpu_overlap(c, xov_msg, sizeof xov_msg);
    if (me == 0) all = moe_xcalloc((size_t)W, sizeof *all);
    int rc = MPI_Gather(&rec, (int)sizeof rec, MPI_BYTE, all, (int)sizeof rec, MPI_BYTE, 0,
                        moe_comm_mpi(c, MOE_COMM_WORLD));
    if (rc != MPI_SUCCESS) {
        free(all);
        return moe_comm_mpi_error("MPI_Gather(topology records)", rc, __FILE__, __LINE__);
    }
    if (me != 0) return st;

    const moe_comm_topo *t0 = &all[0].t;
    const moe_comm_info *in = &c->info;
    fprintf(f, "machine (%s): %d package(s), %d core(s), %d PU(s), %d NUMA node(s)\n", all[0].host,
            t0->packages, t0->cores, t0->pus, t0->numa_nodes);
    fprintf(f, "world: %d rank(s) on %d node(s); EP=%d, EDP=%d", W, in->n_nodes, in->ep_size,
            in->edp_size);
    if (in->n_experts > 0)
        fprintf(f, ", %d experts, %d per rank", in->n_experts, in->n_local_experts);
    fprintf(f, "\n\n%-5s %-16s %4s %5s %-12s %5s %4s %4s %5s %5s %4s\n", "rank", "host", "node",
            "local", "cpuset", "cores", "PUs", "ep", "ep_rk", "edp", "blas");
    int unbound = 0, oversub = 0, failed = 0;
    for (int r = 0; r < W; r++) {
        const moe_comm_rank_rec *x = &all[r];
        int shared = 0;
        for (int s = 0; s < W; s++)
            if (s != r && all[s].node == x->node && x->t.bound && all[s].t.bound &&
                moe_comm_masks_overlap(x->mask, all[s].mask))
                shared = 1;
        unbound += !x->t.bound;
        int on_host = 0; // real machine, not the (possibly fake) node
        for (int s = 0; s < W; s++) on_host += !strcmp(all[s].host, x->host);
        oversub += shared || on_host > x->t.cores;
        failed += !x->ok;
        fprintf(f, "%-5d %-16.16s %4d %5d %-12.12s %5d %4d %4d %5d %5d %4d%s\n", r, x->host,
                x->node, x->node_rank, x->ok ? (x->t.bound ? x->t.cpuset : "unbound") : "?",
                x->t.bound_cores, x->t.bound_pus, x->ep_index, x->ep_rank, x->edp_rank, x->blas,
                shared ? "  (binding shared with another rank)" : "");
    }
    fprintf(f,
            "\nEP groups (ranks holding all experts between them; dispatch/combine run inside):\n");
    for (int g = 0; g < in->edp_size; g++) {
        fprintf(f, "  ep group %d:", g);
        for (int r = 0; r < W; r++)
            if (all[r].ep_index == g) fprintf(f, " %d", r);
        if (in->n_experts > 0)
            fprintf(f, "   (rank with ep_rank i holds experts [i*%d, (i+1)*%d))",
                    in->n_local_experts, in->n_local_experts);
        moe_topo_print_span(f, all, W, 0, g, "dispatch/combine");
    }
    fprintf(f, "EDP groups (replicas of the same experts; expert gradients all-reduced inside):\n");
    for (int i = 0; i < in->ep_size; i++) {
        fprintf(f, "  edp group %d:", i);
        for (int r = 0; r < W; r++)
            if (all[r].ep_rank == i) fprintf(f, " %d", r);
        moe_topo_print_span(f, all, W, 1, i, "expert-gradient all-reduce");
    }
    fprintf(f, "world:");
    moe_topo_print_span(f, all, W, 2, 0, "every dense-gradient and routing-statistics all-reduce");
    fprintf(f, "BLAS threads per rank: %s\n",
            moe_comm_env_threads() ? "from OPENBLAS_NUM_THREADS"
                                   : "cores the rank owns (set OPENBLAS_NUM_THREADS to override)");
    if (failed)
        fprintf(f,
                "warning: %d rank(s) could not read the topology (hwloc); their lines show '?'\n",
                failed);
    if (unbound)
        fprintf(f,
                "warning: %d rank(s) are not bound to cores: bind them (mpirun --bind-to core, "
                "srun --cpu-bind=cores) for stable timings\n",
                unbound);
    if (oversub)
        fprintf(f, "warning: oversubscribed: more ranks than cores on a node or ranks sharing "
                   "cores; expect slow collectives and timings that do not mean much\n");
    if (xov) fprintf(f, "warning: %s\n", xov_msg);
    if (!in->ep_in_node)
        fprintf(f,
                "warning: EP=%d does not fit the ranks per node: some EP groups span nodes and "
                "their all-to-all leaves shared memory\n",
                in->ep_size);
    free(all);
    return st;
}

// The running kernel's boot id as 64 bits (0: unknown).
static uint64_t moe_comm_boot_id(void) {
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f) return 0;
    char buf[64] = "";
    const int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    uint64_t h = 14695981039346656037ull;
    for (const char *p = buf; ok && *p && *p != '\n'; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return ok && buf[0] ? h : 0;
}

int moe_comm_cross_node_cpu_overlap(const moe_comm *c, char *msg, size_t n) {
    if (n) msg[0] = '\0';
    const int W = c->info.world_size;
    if (W < 2) return 0;
    typedef struct {
        uint64_t boot;
        int32_t bound, node;
        unsigned long mask[MOE_TOPO_MASK_WORDS];
    } rec_t;
    rec_t me = {.boot = moe_comm_boot_id(), .node = c->info.node_index};
    moe_comm_topo t;
    if (moe_comm_topo_query_mask(&t, me.mask) == MOE_OK) me.bound = t.bound;
    rec_t *all = moe_xcalloc((size_t)W, sizeof *all);
    int pairs = 0;
    if (MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE,
                      moe_comm_mpi(c, MOE_COMM_WORLD)) != MPI_SUCCESS) {
        free(all);
        return 0; // a diagnostic: a failure here is not the run's
    }
    for (int r = 0; r < W; r++)
        for (int s = r + 1; s < W; s++) {
            const rec_t *a = &all[r], *b = &all[s];
            if (!a->boot || a->boot != b->boot || a->node == b->node || !a->bound || !b->bound ||
                !moe_comm_masks_overlap(a->mask, b->mask))
                continue;
            if (!pairs++ && n) {
                char ca[64], cb[64];
                hwloc_bitmap_t x = hwloc_bitmap_alloc();
                hwloc_bitmap_from_ulongs(x, MOE_TOPO_MASK_WORDS, a->mask);
                hwloc_bitmap_list_snprintf(ca, sizeof ca, x);
                hwloc_bitmap_from_ulongs(x, MOE_TOPO_MASK_WORDS, b->mask);
                hwloc_bitmap_list_snprintf(cb, sizeof cb, x);
                hwloc_bitmap_free(x);
                snprintf(msg, n,
                         "ranks %d (%s) and %d (%s) are on different nodes of one machine (the same "
                         "kernel) and bound to overlapping CPUs (%s and %s): they take turns on "
                         "those cores and every message between them waits a scheduler slice; give "
                         "each node its own cores (cluster/vcluster.sh does; docs/cluster.md)",
                         r, moe_comm_host_of(c, r), s, moe_comm_host_of(c, s), ca, cb);
            }
        }
    free(all);
    return pairs;
}

void moe_comm_versions(char *mpi, size_t mpi_cap, char *hwloc, size_t hwloc_cap) {
    char lib[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    if (MPI_Get_library_version(lib, &len) != MPI_SUCCESS) snprintf(lib, sizeof lib, "unknown");
    char *nl = strpbrk(lib, "\n,"); // "Open MPI v4.1.4, package: ..., ident: ..., repo rev: ..."
    if (nl) *nl = 0;
#ifdef OMPI_MAJOR_VERSION
    snprintf(mpi, mpi_cap, "%s (header Open MPI %d.%d.%d, MPI %d.%d)", lib, OMPI_MAJOR_VERSION,
             OMPI_MINOR_VERSION, OMPI_RELEASE_VERSION, MPI_VERSION, MPI_SUBVERSION);
#else
    snprintf(mpi, mpi_cap, "%s (header MPI %d.%d)", lib, MPI_VERSION, MPI_SUBVERSION);
#endif
    // hwloc has no release number at run time, only the API version (2.9.0 has API 2.8.0).
    const unsigned v = hwloc_get_api_version();
#ifdef HWLOC_VERSION
    snprintf(hwloc, hwloc_cap, "%s (header; runtime API %u.%u.%u)", HWLOC_VERSION, v >> 16,
             (v >> 8) & 0xff, v & 0xff);
#else
    snprintf(hwloc, hwloc_cap, "API %u.%u.%u (runtime)", v >> 16, (v >> 8) & 0xff, v & 0xff);
#endif
}
