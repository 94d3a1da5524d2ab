// main.c: the moe command. Everything lives in libmoe; this only forwards to the dispatcher.
#include "cli.h"

int main(int argc, char **argv) { return moe_cli_main(argc, argv); }
