// cli.h: the manual of the moe command line — the subcommand table (cli/cli.c) and the commands
// that live here. Each command takes argv after the command name (argv[0] is the command) and
// returns the process exit code (common/moe-common.h). Benchmarks are bench/bench.h; sweeps and
// reports sweep/sweep.h.
#ifndef MOE_CLI_H
#define MOE_CLI_H

#include "moe-common.h"

// Dispatches argv[1] to a command; returns the process exit code.
int moe_cli_main(int argc, char **argv);

int moe_cmd_config(int argc, char **argv);   // cli/cmd-config.c: read, override, validate, print
int moe_cmd_params(int argc, char **argv);   // cli/cmd-params.c: parameter accounting
int moe_cmd_train(int argc, char **argv);    // cli/cmd-train.c: `moe train`
int moe_cmd_eval(int argc, char **argv);     // cli/cmd-train.c: `moe eval`
int moe_cmd_generate(int argc, char **argv); // cli/cmd-generate.c: sample from a checkpoint
int moe_cmd_topo(int argc, char **argv);     // cli/cmd-topo.c: machine, bindings, EP/EDP groups
int moe_cmd_inspect(int argc, char **argv);  // cli/cmd-inspect.c: manifest + verification
int moe_cmd_routes(int argc, char **argv);   // cli/cmd-routes.c: routing trace analysis
int moe_cmd_export(int argc, char **argv);   // cli/cmd-interop.c: to a Hugging Face directory
int moe_cmd_import(int argc, char **argv);   // cli/cmd-interop.c: from a Hugging Face directory
int moe_cmd_upcycle(int argc, char **argv);  // cli/cmd-upcycle.c: dense → MoE checkpoint
int moe_cmd_merge(int argc, char **argv);    // cli/cmd-merge.c: LoRA adapters folded into the base
// `moe routes CHECKPOINT --text TEXT [--json]` (cli/cmd-generate.c, with moe generate's launch).
int moe_cmd_routes_text(const char *where, const char *text, int json, const char **sets,
                        int n_sets);

// `moe --version` (cli/cmd-version.c): version, git revision at build time, dependency versions
// (run time and headers), one per line.
void moe_cli_version(FILE *f);

#endif
