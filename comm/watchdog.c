// watchdog.c: the job watchdog (watchdog.h) — a heartbeat thread per rank over UDP, phase
// timeouts, and one clear message before the job is ended. Trade-off: heartbeats go to every
// other rank (W−1 datagrams of 48 bytes per interval), which is simple and gives every rank the
// whole picture for its message; at thousands of ranks a tree would be needed.
#include "comm-impl.h"
#include "watchdog.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MOE_WD_MAGIC 0x6d6f6577u // "moew"

typedef struct {
    uint32_t magic, job;
    int32_t rank, phase;
    int32_t in_mpi, pad; // the sender was inside an MPI call (waiting) when it sent this
    int64_t step;
    double in_phase; // seconds the sender has been in `phase`
    uint64_t seq;
} moe_wd_beat;

typedef struct {
    uint32_t addr; // IPv4, network order
    uint16_t port; // network order
    char host[48];
    uint32_t job; // rank 0's is the job's
} moe_wd_addr;

typedef struct {
    double last; // monotonic time of the last heartbeat (start time until one arrives)
    int heard;   // any heartbeat arrived
    moe_wd_beat beat;
} moe_wd_peer;

struct moe_watchdog {
    moe_watchdog_params p;
    int rank, W, sock;
    uint32_t job;
    moe_wd_addr *addrs; // (W)
    moe_wd_peer *peers; // (W) owned by the thread
    pthread_t thread;
    pthread_mutex_t mu; // guards the fields below
    int stop;
    moe_watch_phase phase;
    int64_t step;
    double t_enter;
    int n_steps, n_ckpts;
    double slowest_step, slowest_ckpt;
};

static double moe_wd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *moe_watch_phase_name(moe_watch_phase p) {
    switch (p) {
    case MOE_WATCH_STARTUP: return "start-up";
    case MOE_WATCH_STEP: return "step";
    case MOE_WATCH_CHECKPOINT: return "checkpoint";
    case MOE_WATCH_IDLE: return "idle";
    case MOE_WATCH_N_PHASES: break;
    }
    return "?";
}

// "step 231", "the checkpoint at step 230", "start-up" into buf.
static const char *moe_wd_doing(char *buf, size_t cap, int32_t phase, int64_t step) {
    switch ((moe_watch_phase)phase) {
    case MOE_WATCH_STEP: snprintf(buf, cap, "step %lld", (long long)step); break;
    case MOE_WATCH_CHECKPOINT:
        snprintf(buf, cap, "the checkpoint at step %lld", (long long)step);
        break;
    case MOE_WATCH_STARTUP:
    case MOE_WATCH_IDLE:
    case MOE_WATCH_N_PHASES: snprintf(buf, cap, "%s", moe_watch_phase_name(phase)); break;
    }
    return buf;
}

// The timeout of the phase the main thread is in (caller holds mu).
static double moe_wd_timeout(const moe_watchdog *w) {
    const moe_watchdog_params *p = &w->p;
    switch (w->phase) {
    case MOE_WATCH_STARTUP: return p->startup_timeout;
    case MOE_WATCH_STEP:
        if (p->step_timeout > 0) return p->step_timeout;
        if (w->n_steps < 2) return p->startup_timeout; // first steps: allocation, warm caches
        return w->slowest_step * 20 > 30 ? w->slowest_step * 20 : 30;
    case MOE_WATCH_CHECKPOINT:
        if (p->checkpoint_timeout > 0) return p->checkpoint_timeout;
        if (w->n_ckpts < 1) return p->startup_timeout;
        return w->slowest_ckpt * 10 > 60 ? w->slowest_ckpt * 10 : 60;
    case MOE_WATCH_IDLE:
    case MOE_WATCH_N_PHASES: break;
    }
    return 0;
}

// Prints why the job ends, naming the ranks that did not arrive and what every rank was doing,
// then ends this process (exit 1); the launcher ends the rest of the job.
static void moe_wd_fire(moe_watchdog *w, const char *why, double now) {
    char msg[8192];
    size_t n = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < sizeof msg) n += (size_t)snprintf(msg + n, sizeof msg - n, __VA_ARGS__);           \
    } while (0)
    const int me_in_mpi = atomic_load_explicit(&moe_comm_in_mpi, memory_order_relaxed) > 0;
    ADD("[rank %d] moe watchdog: %s (on %s%s).", w->rank, why, w->addrs[w->rank].host,
        me_in_mpi ? ", waiting in MPI" : ", busy outside MPI: this rank holds the others up");
    int silent = 0, behind = 0;
    for (int r = 0; r < w->W; r++) {
        if (r == w->rank) continue;
        const moe_wd_peer *q = &w->peers[r];
        if (now - q->last > w->p.silence_timeout)
            silent++;
        else if (q->beat.phase != (int32_t)w->phase || q->beat.step != w->step ||
                 (me_in_mpi && !q->beat.in_mpi))
            behind++;
    }
    if (silent || behind) {
        // The ranks, in a part of msg that leaves room for the closing advice: a large job's
        // list ends "... and N more" rather than cutting the advice or a rank's line.
        char ranks[sizeof msg - 1024] = ""; // the rest: why (256), host (48), the advice
        moe_list l;
        moe_list_start(&l, ranks, sizeof ranks, "; ");
        for (int r = 0; r < w->W; r++) {
            if (r == w->rank) continue;
            const moe_wd_peer *q = &w->peers[r];
            char doing[96] = "";
            moe_wd_doing(doing, sizeof doing, q->beat.phase, q->beat.step);
            if (now - q->last > w->p.silence_timeout) {
                moe_list_add(&l,
                             "rank %d on %s, silent for %.0f s (stopped, crashed or its link is "
                             "down; %s%s)",
                             r, w->addrs[r].host, now - q->last, q->heard ? "last heard in " : "",
                             q->heard ? doing : "never heard");
            } else if (q->beat.phase != (int32_t)w->phase || q->beat.step != w->step ||
                       (me_in_mpi && !q->beat.in_mpi)) {
                moe_list_add(&l, "rank %d on %s, in %s for %.0f s%s", r, w->addrs[r].host, doing,
                             q->beat.in_phase,
                             q->beat.in_mpi ? "" : ", busy outside MPI (computing or hung)");
            }
        }
        moe_list_end(&l);
        ADD(" Did not arrive: %s.", ranks);
    } else if (!me_in_mpi) {
        ADD(" The other ranks are alive and wait for this one.");
    } else {
        ADD(" Every rank is alive and waiting in MPI: a collective is stuck inside MPI or the "
            "network (a link that drops packets?).");
    }
    ADD(" Ending the job (exit 1): fix or leave out the node, then run again with --resume latest "
        "(another number of ranks reshards). Timeouts: the config's watchdog section.\n");
#undef ADD
    fputs(msg, stderr);
    fflush(stderr);
    fflush(stdout);
    _exit(MOE_EXIT_FAILURE);
}

static void moe_wd_send(moe_watchdog *w, uint64_t seq, double now) {
    moe_wd_beat b = {.magic = MOE_WD_MAGIC, .job = w->job, .rank = w->rank, .seq = seq};
    pthread_mutex_lock(&w->mu);
    b.phase = (int32_t)w->phase;
    b.step = w->step;
    b.in_phase = now - w->t_enter;
    pthread_mutex_unlock(&w->mu);
    b.in_mpi = atomic_load_explicit(&moe_comm_in_mpi, memory_order_relaxed) > 0;
    for (int r = 0; r < w->W; r++) {
        if (r == w->rank) continue;
        struct sockaddr_in to = {.sin_family = AF_INET};
        to.sin_addr.s_addr = w->addrs[r].addr;
        to.sin_port = w->addrs[r].port;
        // Best effort: a full buffer or an unreachable peer is what the silence check is for.
        (void)sendto(w->sock, &b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
    }
}

static void moe_wd_drain(moe_watchdog *w, double now) {
    for (;;) {
        moe_wd_beat b;
        ssize_t got = recv(w->sock, &b, sizeof b, MSG_DONTWAIT);
        if (got < 0) break;
        if (got != (ssize_t)sizeof b || b.magic != MOE_WD_MAGIC || b.job != w->job || b.rank < 0 ||
            b.rank >= w->W || b.rank == w->rank || b.phase < 0 || b.phase >= MOE_WATCH_N_PHASES)
            continue; // not ours (another job, a stray datagram)
        moe_wd_peer *q = &w->peers[b.rank];
        if (q->heard && b.seq <= q->beat.seq) continue; // reordered
        q->beat = b;
        q->heard = 1;
        q->last = now;
    }
}

static void moe_wd_check(moe_watchdog *w, double now) {
    pthread_mutex_lock(&w->mu);
    const moe_watch_phase ph = w->phase;
    const double in_phase = now - w->t_enter, timeout = moe_wd_timeout(w);
    const int64_t step = w->step;
    pthread_mutex_unlock(&w->mu);
    if (ph == MOE_WATCH_IDLE) return;
    char why[256], doing[96];
    moe_wd_doing(doing, sizeof doing, (int32_t)ph, step);
    if (timeout > 0 && in_phase > timeout) {
        snprintf(why, sizeof why, "%s has run for %.0f s, past its timeout of %.0f s", doing,
                 in_phase, timeout);
        moe_wd_fire(w, why, now);
    }
    if (in_phase <= w->p.silence_timeout) return;
    for (int r = 0; r < w->W; r++)
        if (r != w->rank && now - w->peers[r].last > w->p.silence_timeout) {
            snprintf(why, sizeof why, "waited %.0f s in %s while rank %d was silent", in_phase,
                     doing, r);
            moe_wd_fire(w, why, now);
        }
}

static void *moe_wd_main(void *arg) {
    moe_watchdog *w = arg;
    uint64_t seq = 0;
    double next = 0;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        const int stop = w->stop;
        pthread_mutex_unlock(&w->mu);
        if (stop) break;
        double now = moe_wd_now();
        if (now >= next) {
            moe_wd_send(w, ++seq, now);
            next = now + w->p.heartbeat;
        }
        struct pollfd pfd = {.fd = w->sock, .events = POLLIN};
        int ms = (int)((next - now) * 1000) + 1;
        (void)poll(&pfd, 1, ms > 1000 ? 1000 : ms);
        now = moe_wd_now();
        moe_wd_drain(w, now);
        moe_wd_check(w, now);
    }
    return NULL;
}

// This host's IPv4 address as the other nodes reach it: the host name resolved (the virtual
// cluster and most clusters list nodes in /etc/hosts or DNS), else loopback (one machine).
static uint32_t moe_wd_host_addr(const char *host) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res = NULL;
    uint32_t a = htonl(INADDR_LOOPBACK);
    if (getaddrinfo(host, NULL, &hints, &res) == 0 && res) {
        a = ((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr;
        freeaddrinfo(res);
    }
    return a;
}

moe_status moe_watchdog_start(const moe_comm *c, const moe_watchdog_params *p, moe_watchdog **out) {
    *out = NULL;
    const int W = c ? moe_comm_size(c, MOE_COMM_WORLD) : 1;
    if (!p->enabled || W == 1) return MOE_OK;
    if (!(p->startup_timeout > 0 && p->silence_timeout > 0 && p->heartbeat > 0 &&
          p->step_timeout >= 0 && p->checkpoint_timeout >= 0))
        return moe_set_error(
            MOE_EINVAL, "watchdog: startup_timeout, silence_timeout and heartbeat "
                        "must be > 0, step_timeout and checkpoint_timeout >= 0 (0: automatic)");
    moe_watchdog *w = moe_xcalloc(1, sizeof *w);
    w->p = *p;
    w->W = W;
    w->rank = moe_comm_rank(c, MOE_COMM_WORLD);
    w->addrs = moe_xcalloc((size_t)W, sizeof *w->addrs);
    w->peers = moe_xcalloc((size_t)W, sizeof *w->peers);
    moe_status st = MOE_OK;
    moe_wd_addr me = {0};
    w->sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t sl = sizeof sa;
    if (w->sock < 0 || bind(w->sock, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(w->sock, (struct sockaddr *)&sa, &sl) != 0)
        st = moe_set_error(MOE_EIO, "watchdog: cannot open a UDP socket (%s)", strerror(errno));
    if (!st) {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        me.addr = moe_wd_host_addr(host);
        me.port = sa.sin_port;
        const size_t hl = strnlen(host, sizeof me.host - 1); // keep the first 47 characters
        memcpy(me.host, hl ? host : "?", hl ? hl : 1);
        me.job = (uint32_t)(moe_wd_now() * 1e6) ^ (uint32_t)getpid() * 2654435761u;
    }
    // Every rank takes part in the gather, also one whose socket failed (then all refuse).
    me.port = st ? 0 : me.port;
    int rc = MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, w->addrs, (int)sizeof me, MPI_BYTE,
                           moe_comm_mpi(c, MOE_COMM_WORLD));
    if (rc != MPI_SUCCESS)
        st = moe_comm_mpi_error("MPI_Allgather(watchdog addresses)", rc, __FILE__, __LINE__);
    for (int r = 0; r < W && !st; r++)
        if (w->addrs[r].port == 0)
            st = moe_set_error(MOE_EIO, "watchdog: rank %d could not open its UDP socket", r);
    if (st) {
        if (w->sock >= 0) close(w->sock);
        free(w->addrs);
        free(w->peers);
        free(w);
        return st;
    }
    w->job = w->addrs[0].job;
    const double now = moe_wd_now();
    for (int r = 0; r < W; r++) w->peers[r].last = now;
    w->phase = MOE_WATCH_STARTUP;
    w->step = -1;
    w->t_enter = now;
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, moe_wd_main, w) != 0) {
        close(w->sock);
        pthread_mutex_destroy(&w->mu);
        free(w->addrs);
        free(w->peers);
        free(w);
        return moe_set_error(MOE_EIO, "watchdog: cannot start its thread");
    }
    *out = w;
    return MOE_OK;
}

void moe_watchdog_enter(moe_watchdog *w, moe_watch_phase phase, int64_t step) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->phase = phase;
    w->step = step;
    w->t_enter = moe_wd_now();
    pthread_mutex_unlock(&w->mu);
}

void moe_watchdog_leave(moe_watchdog *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    const double d = moe_wd_now() - w->t_enter;
    switch (w->phase) {
    case MOE_WATCH_STEP:
        w->n_steps++;
        if (d > w->slowest_step) w->slowest_step = d;
        break;
    case MOE_WATCH_CHECKPOINT:
        w->n_ckpts++;
        if (d > w->slowest_ckpt) w->slowest_ckpt = d;
        break;
    case MOE_WATCH_STARTUP:
    case MOE_WATCH_IDLE:
    case MOE_WATCH_N_PHASES: break;
    }
    w->phase = MOE_WATCH_IDLE;
    pthread_mutex_unlock(&w->mu);
}

void moe_watchdog_stop(moe_watchdog *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    close(w->sock);
    free(w->addrs);
    free(w->peers);
    free(w);
}
