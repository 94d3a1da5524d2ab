// trainer.h: the moe command line and (later) model assembly, optimizer, data, training loop,
// checkpoints and metrics. The manual of the trainer module.
#ifndef MOE_TRAINER_H
#define MOE_TRAINER_H

#include "moe-common.h"

// Exit codes of every moe subcommand (documented in README and `moe --help`).
enum {
    MOE_EXIT_OK = 0,
    MOE_EXIT_FAILURE = 1,   // a run failed (I/O, MPI, non-finite values beyond the limit)
    MOE_EXIT_USAGE = 2,     // bad command line, bad or invalid config
    MOE_EXIT_DATA = 3,      // bad data or checkpoint file (corrupt, truncated, wrong format)
    MOE_EXIT_TEMPFAIL = 75, // preempted: checkpoint written, run again to resume (EX_TEMPFAIL)
};

// Maps a status to the exit code above.
int moe_exit_code(moe_status s);

// Dispatches argv[1] to a subcommand; returns the process exit code.
int moe_cli_main(int argc, char **argv);

// Subcommands: each takes argv after the subcommand name (argv[0] is the subcommand) and returns
// an exit code. Each prints its own --help.
int moe_cmd_params(int argc, char **argv);

#endif
