// watchdog.h: the job watchdog of comm/ (comm/watchdog.c) — every fault of a multi-node job ends
// it, instead of leaving ranks blocked in a collective forever. MPI notices a process that dies
// (its sockets close), but not a lost link, a partition or a stopped (SIGSTOP) rank: the others
// wait in their next collective with no error. So every rank runs a thread that sends a heartbeat
// (UDP, to every other rank of the job, every `heartbeat` seconds) carrying what the rank is doing
// (phase, step, seconds in it), and listens to the others. A rank ends the job (exit 1, after one
// message on stderr naming the ranks and nodes that did not arrive and what they were doing) when
//   - it has been in the current phase longer than that phase's timeout (a step, a checkpoint,
//     start-up: separate, and derived from measured durations when not set), or
//   - it has been waiting longer than `silence_timeout` and some rank has been silent that long
//     (a stopped process, a crashed node or a cut link: no heartbeat arrives).
// A slow but healthy rank keeps sending heartbeats, so a straggler never ends the job: only the
// phase timeouts, derived from the slowest phase seen so far, bound it. MPI cannot be re-initialised
// in a process, so recovery is exit, relaunch on the survivors and `--resume latest`.
//
// Threads: the watchdog thread never calls MPI (MPI runs FUNNELED); moe_watchdog_start is
// collective (it exchanges the heartbeat addresses with MPI_Allgather) and, like enter/leave/stop,
// is called from the main thread. Cost per phase change: one mutex lock; the thread wakes every
// heartbeat interval.
#ifndef MOE_WATCHDOG_H
#define MOE_WATCHDOG_H

#include "comm.h"

typedef enum {
    MOE_WATCH_STARTUP = 0, // setup: data, model, checkpoint load
    MOE_WATCH_STEP,        // one training iteration (step, metrics, evaluation)
    MOE_WATCH_CHECKPOINT,  // writing a checkpoint
    MOE_WATCH_IDLE,        // not watched (after training, before shutdown)
    MOE_WATCH_N_PHASES
} moe_watch_phase;

const char *moe_watch_phase_name(moe_watch_phase p); // "start-up", "step", "checkpoint", "idle"

typedef struct {
    int enabled;               // 0: start returns a NULL watchdog and every call is a no-op
    double startup_timeout;    // s (> 0): start-up, and the first steps and checkpoint
    double step_timeout;       // s; 0 = auto: max(30 s, 20 × the slowest step seen)
    double checkpoint_timeout; // s; 0 = auto: max(60 s, 10 × the slowest checkpoint seen)
    double silence_timeout;    // s (> 0): a rank unheard this long, while we wait, is lost
    double heartbeat;          // s (> 0) between heartbeats
} moe_watchdog_params;

typedef struct moe_watchdog moe_watchdog;

// Collective over the world of c. Starts the thread in phase STARTUP. *out = NULL (and MOE_OK)
// when disabled or when the world has one rank. MOE_EIO when no UDP socket can be made.
moe_status moe_watchdog_start(const moe_comm *c, const moe_watchdog_params *p, moe_watchdog **out);
// The main thread enters a phase (at step `step`; -1 when none). NULL-safe.
void moe_watchdog_enter(moe_watchdog *w, moe_watch_phase phase, int64_t step);
// The phase entered last has completed: its duration feeds the automatic timeouts. NULL-safe.
void moe_watchdog_leave(moe_watchdog *w);
// Stops and joins the thread; not collective. NULL-safe.
void moe_watchdog_stop(moe_watchdog *w);

#endif
