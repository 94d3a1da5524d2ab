// comm.c: MPI lifetime, the layout check and the EP/EDP/node groups of a moe_comm. Groups are cut
// from one (node, rank-in-node) ordering of the world so EP groups sit inside nodes when the node
// size allows; the layout is checked by a pure function before any communicator is built.
#include "comm-impl.h"

#include <stdarg.h>
#include <string.h>

static int moe_comm_we_initialised; // set by moe_comm_init: whether finalize must call MPI_Finalize

_Atomic int moe_comm_in_mpi = 0; // see comm-impl.h (read by the watchdog)

moe_status moe_comm_mpi_error(const char *call, int rc, const char *file, int line) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0, rank = -1, inited = 0, finalized = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error code %d", rc);
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return moe_set_error(MOE_EMPI, "rank %d: %s failed (%s:%d): %s", rank, call, file, line, msg);
}

moe_status moe_comm_init(int *argc, char ***argv) {
    int inited = 0, provided = 0;
    MOE_MPI(MPI_Initialized(&inited));
    if (inited) {
        MOE_MPI(MPI_Query_thread(&provided));
    } else {
        MOE_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
        moe_comm_we_initialised = 1;
    }
    MOE_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    if (provided < MPI_THREAD_FUNNELED)
        return moe_set_error(MOE_EMPI,
                             "MPI provides thread level %d, moe needs MPI_THREAD_FUNNELED (%d): "
                             "use an MPI built with thread support (Debian's Open MPI is)",
                             provided, MPI_THREAD_FUNNELED);
    return MOE_OK;
}

moe_status moe_comm_finalize(void) {
    int finalized = 0;
    MOE_MPI(MPI_Finalized(&finalized));
    if (moe_comm_we_initialised && !finalized) MOE_MPI(MPI_Finalize());
    moe_comm_we_initialised = 0;
    return MOE_OK;
}

void moe_comm_abort(int code) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

double moe_comm_wtime(void) { return MPI_Wtime(); }

moe_status moe_comm_check_layout(int world, int ep, int n_experts) {
    if (world < 1) return moe_set_error(MOE_ELAYOUT, "world size %d: need at least 1 rank", world);
    if (ep < 1)
        return moe_set_error(MOE_ELAYOUT,
                             "expert-parallel size %d: must be >= 1 (world size %d, %d experts)",
                             ep, world, n_experts);
    if (world % ep != 0)
        return moe_set_error(MOE_ELAYOUT,
                             "expert-parallel size %d does not divide the world size %d "
                             "(W = EP x EDP): run on a multiple of %d ranks or pick EP among the "
                             "divisors of %d",
                             ep, world, ep, world);
    if (n_experts < 0)
        return moe_set_error(MOE_ELAYOUT, "number of experts %d: must be >= 0", n_experts);
    if (n_experts > 0 && n_experts % ep != 0)
        return moe_set_error(MOE_ELAYOUT,
                             "expert-parallel size %d does not divide the %d experts (each of the "
                             "%d ranks of an EP group holds E/EP experts): pick EP dividing %d",
                             ep, n_experts, ep, n_experts);
    return MOE_OK;
}

moe_status moe_comm_agree_mpi(MPI_Comm comm, moe_status local) {
    int rank = 0, world_rank = 0, in[2], out[2];
    MOE_MPI(MPI_Comm_rank(comm, &rank));
    MOE_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    // MINLOC over (status, rank): the most negative status wins; ties to the lowest rank.
    in[0] = local;
    in[1] = rank;
    MOE_MPI(MPI_Allreduce(in, out, 1, MPI_2INT, MPI_MINLOC, comm));
    if (out[0] == MOE_OK) return local;
    // The failing rank's world rank and message travel together (the whole message).
    struct {
        int world_rank;
        char text[MOE_COMM_AGREE_MSG];
    } msg;
    memset(&msg, 0, sizeof msg);
    if (rank == out[1]) {
        const char *e = moe_last_error();
        msg.world_rank = world_rank;
        snprintf(msg.text, sizeof msg.text, "%s", e && e[0] ? e : moe_status_str(out[0]));
    }
    MOE_MPI(MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, out[1], comm));
    msg.text[sizeof msg.text - 1] = 0;
    // A message that already names its rank (an MPI failure: "rank R: ...") is not named twice.
    char prefix[32];
    snprintf(prefix, sizeof prefix, "rank %d: ", msg.world_rank);
    if (!strncmp(msg.text, prefix, strlen(prefix))) return moe_set_error(out[0], "%s", msg.text);
    return moe_set_error(out[0], "%s%s", prefix, msg.text);
}

int moe_comm_node_of(const moe_comm *c, int world_rank) {
    if (!c) return 0;
    MOE_ASSERT(world_rank >= 0 && world_rank < c->info.world_size);
    return c->node_of[world_rank];
}

int moe_comm_node_shape(const moe_comm *c, int *n_nodes) {
    *n_nodes = c ? c->info.n_nodes : 1;
    if (!c) return 1;
    const int W = c->info.world_size, q = W / c->info.n_nodes;
    int *count = moe_xcalloc((size_t)c->info.n_nodes, sizeof(int));
    for (int r = 0; r < W; r++) count[c->node_of[r]]++;
    int same = q * c->info.n_nodes == W;
    for (int i = 0; i < c->info.n_nodes; i++) same &= count[i] == q;
    free(count);
    return same ? q : 0;
}

const char *moe_comm_host_of(const moe_comm *c, int world_rank) {
    if (!c) return "";
    MOE_ASSERT(world_rank >= 0 && world_rank < c->info.world_size);
    return c->hosts + (size_t)world_rank * MOE_COMM_HOST_LEN;
}

moe_status moe_comm_agree(const moe_comm *c, moe_status st) {
    if (!c || c->info.world_size == 1) return st;
    return moe_comm_agree_mpi(c->comms[MOE_COMM_WORLD], st);
}

void moe_comm_free(moe_comm *c) {
    if (!c) return;
    for (int g = 0; g < MOE_COMM_N_GROUPS; g++)
        if (c->comms[g] != MPI_COMM_NULL) MPI_Comm_free(&c->comms[g]);
    free(c->group_world);
    free(c->node_of);
    free(c->hosts);
    free(c);
}

// (node key, rank in node, world rank) ordering used to place EP groups.
typedef struct {
    int key, local, world;
} moe_comm_place;

static int moe_comm_place_cmp(const void *a, const void *b) {
    const moe_comm_place *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->local != y->local) return x->local < y->local ? -1 : 1;
    return (x->world > y->world) - (x->world < y->world);
}

moe_status moe_comm_create(const moe_comm_params *params, moe_comm **out) {
    MOE_ASSERT(params && out);
    *out = NULL;
    int inited = 0, W = 0, me = 0;
    MOE_MPI(MPI_Initialized(&inited));
    if (!inited)
        return moe_set_error(MOE_EMPI,
                             "moe_comm_create: MPI is not initialised: call moe_comm_init first");
    MOE_MPI(MPI_Comm_size(MPI_COMM_WORLD, &W));
    MOE_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &me));
    // The layout is refused before anything is allocated (every rank sees the same numbers).
    moe_status st = moe_comm_check_layout(W, params->ep_size, params->n_experts);
    if (st != MOE_OK) return st;
    if (params->fake_node_size < 0)
        return moe_set_error(MOE_EINVAL, "fake_node_size %d: must be >= 0", params->fake_node_size);

    const int EP = params->ep_size;
    moe_comm *c = moe_xcalloc(1, sizeof *c);
    for (int g = 0; g < MOE_COMM_N_GROUPS; g++) c->comms[g] = MPI_COMM_NULL;
    c->group_world = moe_xcalloc((size_t)MOE_COMM_N_GROUPS * (size_t)W, sizeof(int));
    c->node_of = moe_xcalloc((size_t)W, sizeof(int));
    moe_comm_place *all = moe_xcalloc((size_t)W, sizeof *all);
    int mine[2];

    MOE_MPI_GOTO(st, fail, MPI_Comm_dup(MPI_COMM_WORLD, &c->comms[MOE_COMM_WORLD]));
    MOE_MPI_GOTO(st, fail, MPI_Comm_set_errhandler(c->comms[MOE_COMM_WORLD], MPI_ERRORS_RETURN));
    MPI_Comm world = c->comms[MOE_COMM_WORLD];

    // Nodes: shared-memory domains, or fake blocks of consecutive ranks for tests.
    if (params->fake_node_size > 0)
        MOE_MPI_GOTO(
            st, fail,
            MPI_Comm_split(world, me / params->fake_node_size, me, &c->comms[MOE_COMM_NODE]));
    else
        MOE_MPI_GOTO(st, fail,
                     MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL,
                                         &c->comms[MOE_COMM_NODE]));
    MPI_Comm node = c->comms[MOE_COMM_NODE];
    MOE_MPI_GOTO(st, fail, MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN));
    MOE_MPI_GOTO(st, fail, MPI_Comm_rank(node, &c->info.node_rank));
    MOE_MPI_GOTO(st, fail, MPI_Comm_size(node, &c->info.node_size));
    int key = me; // a node is named by its lowest world rank
    MOE_MPI_GOTO(st, fail, MPI_Allreduce(&me, &key, 1, MPI_INT, MPI_MIN, node));
    mine[0] = key;
    mine[1] = c->info.node_rank;
    int *pairs = moe_xcalloc((size_t)W * 2, sizeof(int));
    st = MOE_OK;
    {
        int rc = MPI_Allgather(mine, 2, MPI_INT, pairs, 2, MPI_INT, world);
        if (rc != MPI_SUCCESS)
            st = moe_comm_mpi_error("MPI_Allgather(node keys)", rc, __FILE__, __LINE__);
    }
    for (int r = 0; r < W; r++) all[r] = (moe_comm_place){pairs[2 * r], pairs[2 * r + 1], r};
    free(pairs);
    if (st != MOE_OK) goto fail;
    qsort(all, (size_t)W, sizeof *all, moe_comm_place_cmp);
    // Host names, for messages that name a rank's node (stragglers, the watchdog, moe topo).
    {
        char host[MOE_COMM_HOST_LEN] = "";
        int len = 0;
        char name[MPI_MAX_PROCESSOR_NAME];
        if (MPI_Get_processor_name(name, &len) == MPI_SUCCESS)
            snprintf(host, sizeof host, "%.*s", len, name);
        c->hosts = moe_xcalloc((size_t)W, MOE_COMM_HOST_LEN);
        MOE_MPI_GOTO(st, fail,
                     MPI_Allgather(host, MOE_COMM_HOST_LEN, MPI_CHAR, c->hosts, MOE_COMM_HOST_LEN,
                                   MPI_CHAR, world));
    }

    // Node indices in order of their lowest rank; position of every rank in the placement order.
    int pos = -1, n_nodes = 0;
    for (int i = 0; i < W; i++) {
        if (i == 0 || all[i].key != all[i - 1].key) n_nodes++;
        c->node_of[all[i].world] = n_nodes - 1;
        if (all[i].world == me) pos = i;
    }
    MOE_ASSERT(pos >= 0);
    c->info.world_rank = me;
    c->info.world_size = W;
    c->info.n_nodes = n_nodes;
    c->info.node_index = c->node_of[me];
    c->info.ep_size = EP;
    c->info.ep_rank = pos % EP;
    c->info.ep_index = pos / EP;
    c->info.edp_size = W / EP;
    c->info.edp_rank = pos / EP;
    c->info.n_experts = params->n_experts;
    c->info.n_local_experts = params->n_experts / EP;
    c->info.first_expert = c->info.ep_rank * c->info.n_local_experts;
    c->info.ep_in_node = 1;
    for (int i = 0; i < W; i++)
        if (i % EP != 0 && all[i].key != all[i - 1].key) c->info.ep_in_node = 0;

    MOE_MPI_GOTO(st, fail,
                 MPI_Comm_split(world, c->info.ep_index, c->info.ep_rank, &c->comms[MOE_COMM_EP]));
    MOE_MPI_GOTO(st, fail,
                 MPI_Comm_split(world, c->info.ep_rank, c->info.edp_rank, &c->comms[MOE_COMM_EDP]));
    MOE_MPI_GOTO(st, fail, MPI_Comm_set_errhandler(c->comms[MOE_COMM_EP], MPI_ERRORS_RETURN));
    MOE_MPI_GOTO(st, fail, MPI_Comm_set_errhandler(c->comms[MOE_COMM_EDP], MPI_ERRORS_RETURN));

    // Rank maps: world rank of each rank of each group.
    int *gw = c->group_world;
    for (int r = 0; r < W; r++) gw[MOE_COMM_WORLD * W + r] = r;
    for (int r = 0; r < EP; r++) gw[MOE_COMM_EP * W + r] = all[c->info.ep_index * EP + r].world;
    for (int i = 0; i < W / EP; i++) gw[MOE_COMM_EDP * W + i] = all[i * EP + c->info.ep_rank].world;
    for (int i = 0, n = 0; i < W; i++)
        if (all[i].key == key) gw[MOE_COMM_NODE * W + n++] = all[i].world;
    free(all);
    all = NULL;

    if (me == 0 && !params->quiet && !c->info.ep_in_node)
        fprintf(stderr,
                "moe: warning: EP=%d does not fit the node sizes (%d nodes for %d ranks): some EP "
                "groups span nodes and their all-to-all leaves shared memory; choose EP dividing "
                "the ranks per node for speed\n",
                EP, n_nodes, W);
    *out = c;
    return MOE_OK;
fail:
    free(all);
    moe_comm_free(c);
    return st;
}

moe_comm_info moe_comm_get_info(const moe_comm *c) {
    MOE_ASSERT(c);
    return c->info;
}

int moe_comm_size(const moe_comm *c, moe_comm_group g) {
    MOE_ASSERT(c);
    switch (g) {
    case MOE_COMM_WORLD: return c->info.world_size;
    case MOE_COMM_EP: return c->info.ep_size;
    case MOE_COMM_EDP: return c->info.edp_size;
    case MOE_COMM_NODE: return c->info.node_size;
    default: MOE_ASSERT(!"bad group"); return 0;
    }
}

int moe_comm_rank(const moe_comm *c, moe_comm_group g) {
    MOE_ASSERT(c);
    switch (g) {
    case MOE_COMM_WORLD: return c->info.world_rank;
    case MOE_COMM_EP: return c->info.ep_rank;
    case MOE_COMM_EDP: return c->info.edp_rank;
    case MOE_COMM_NODE: return c->info.node_rank;
    default: MOE_ASSERT(!"bad group"); return 0;
    }
}

int moe_comm_world_rank_of(const moe_comm *c, moe_comm_group g, int r) {
    MOE_ASSERT(c && r >= 0 && r < moe_comm_size(c, g));
    return c->group_world[(size_t)g * (size_t)c->info.world_size + (size_t)r];
}

void moe_comm_printf(const moe_comm *c, const char *fmt, ...) {
    if (c && c->info.world_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void moe_comm_eprintf(const moe_comm *c, const char *fmt, ...) {
    int rank = c ? c->info.world_rank : -1;
    if (!c) {
        int inited = 0, fin = 0;
        MPI_Initialized(&inited);
        MPI_Finalized(&fin);
        if (inited && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    }
    char buf[MOE_ERROR_MAX + 256]; // an error message (MOE_ERROR_MAX) and its context, whole
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[rank %d] %s", rank, buf);
    fflush(stderr);
}
