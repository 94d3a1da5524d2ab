// cmd-topo.c: `moe topo` — the machine topology, every rank's CPU binding, the planned EP/EDP
// groups and warnings, printed by rank 0. Runs under mpirun/srun or alone (singleton MPI).
#include "comm.h"
#include "cli.h"
#include "moe-args.h"

#include <string.h>

int moe_cmd_topo(int argc, char **argv) {
    moe_comm_params p = {1, 0, 0, 1}; // quiet: the report repeats create's warnings
    const moe_arg_opt opts[] = {
        MOE_OPT_INT("--ep", &p.ep_size, "N", 1, 1 << 24, "expert-parallel size"),
        MOE_OPT_INT("--experts", &p.n_experts, "E", 0, 1 << 24, "number of experts"),
        MOE_OPT_INT("--fake-node-size", &p.fake_node_size, "N", 0, 1 << 24,
                    "pretend every N consecutive ranks form a node (to preview\n"
                    "the placement of a multi-node run on one machine; 0: off)"),
    };
    const moe_args_spec spec = {
        "moe topo",
        "Prints the machine (packages, cores, PUs, NUMA nodes), each rank's binding, the\n"
        "EP/EDP groups for expert-parallel size N and E experts, and warnings (unbound or\n"
        "oversubscribed ranks, EP groups spanning nodes).\n"
        "Run under MPI: mpirun -np 4 moe topo --ep 2 --experts 8\n"
        "\n"
        "The rank table's columns: rank (world rank), host, node (node index; nodes\n"
        "ordered by their lowest rank), local (rank within the node), cpuset (the PUs\n"
        "the rank is bound to, or unbound), cores and PUs (how many it is bound to),\n"
        "ep (its EP group), ep_rk (its rank inside that group: it holds experts\n"
        "[ep_rk*E/EP, (ep_rk+1)*E/EP)), edp (its EDP rank: which replica), blas (BLAS\n"
        "threads it will use).",
        NULL,
        0,
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 printed, 1 MPI or topology failure, 2 bad usage or layout (EP\n"
        "not dividing the world size or the experts)."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
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
        if (st != MOE_OK) moe_comm_eprintf(c, "moe topo: %s\n", moe_last_error());
    }
    moe_comm_free(c);
    moe_comm_free(base);
    moe_status fst = moe_comm_finalize();
    return moe_exit_code(st != MOE_OK ? st : fst);
}
