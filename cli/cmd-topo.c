// cmd-topo.c: `moe topo` — the machine topology, every rank's CPU binding, the planned EP/EDP
// groups and warnings, printed by rank 0. Runs under mpirun/srun or alone (singleton MPI).
#include "comm.h"
#include "cli.h"

#include <string.h>

static void moe_topo_usage(FILE *f) {
    fprintf(f,
            "usage: moe topo [--ep N] [--experts E] [--fake-node-size N]\n"
            "  Prints the machine (packages, cores, PUs, NUMA nodes), each rank's binding, the\n"
            "  EP/EDP groups for expert-parallel size N (default 1) and E experts, and warnings\n"
            "  (unbound or oversubscribed ranks, EP groups spanning nodes).\n"
            "  Run under MPI: mpirun -np 4 moe topo --ep 2 --experts 8\n"
            "  --fake-node-size N  pretend every N consecutive ranks form a node (to preview\n"
            "                      the placement of a multi-node run on one machine)\n");
}

static int moe_topo_int(const char *opt, const char *v, int *out) {
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < -1000000 || x > 1000000) {
        fprintf(stderr, "moe topo: %s needs an integer, got '%s'\n", opt, v ? v : "(nothing)");
        return 0;
    }
    *out = (int)x;
    return 1;
}

int moe_cmd_topo(int argc, char **argv) {
    moe_comm_params p = {1, 0, 0, 1}; // quiet: the report repeats create's warnings
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            moe_topo_usage(stdout);
            return MOE_EXIT_OK;
        } else if (!strcmp(argv[i], "--ep")) {
            if (!moe_topo_int("--ep", i + 1 < argc ? argv[++i] : NULL, &p.ep_size))
                return MOE_EXIT_USAGE;
        } else if (!strcmp(argv[i], "--experts")) {
            if (!moe_topo_int("--experts", i + 1 < argc ? argv[++i] : NULL, &p.n_experts))
                return MOE_EXIT_USAGE;
        } else if (!strcmp(argv[i], "--fake-node-size")) {
            if (!moe_topo_int("--fake-node-size", i + 1 < argc ? argv[++i] : NULL, &p.fake_node_size))
                return MOE_EXIT_USAGE;
        } else {
            fprintf(stderr, "moe topo: unknown option '%s'\n", argv[i]);
            moe_topo_usage(stderr);
            return MOE_EXIT_USAGE;
        }
    }
    moe_status st = moe_comm_init(&argc, &argv);
    if (st != MOE_OK) {
        fprintf(stderr, "moe topo: %s\n", moe_last_error());
        return moe_exit_code(st);
    }
    // A layout-free handle first, to know our rank (a refused layout is the same on every rank,
    // so only rank 0 reports it).
    moe_comm *base = NULL, *c = NULL;
    moe_comm_params p0 = {1, 0, p.fake_node_size > 0 ? p.fake_node_size : 0, 1};
    st = moe_comm_create(&p0, &base);
    if (st == MOE_OK) {
        st = moe_comm_create(&p, &c);
        if (st == MOE_ELAYOUT) {
            if (moe_comm_rank(base, MOE_COMM_WORLD) == 0)
                fprintf(stderr, "moe topo: %s\n", moe_last_error());
        } else if (st != MOE_OK) {
            moe_comm_eprintf(base, "moe topo: %s\n", moe_last_error());
        }
    } else {
        moe_comm_eprintf(NULL, "moe topo: %s\n", moe_last_error());
    }
    if (st == MOE_OK) {
        st = moe_comm_topo_report(c, stdout);
        if (st != MOE_OK)
            moe_comm_eprintf(c, "moe topo: %s\n", moe_last_error());
    }
    moe_comm_free(c);
    moe_comm_free(base);
    moe_status fst = moe_comm_finalize();
    return moe_exit_code(st != MOE_OK ? st : fst);
}
