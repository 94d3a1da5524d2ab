// PLACEHOLDER — replaced by the params implementation before anything lands.
#include "trainer.h"
int moe_cmd_params(int argc, char **argv) { (void)argc; (void)argv; return MOE_EXIT_USAGE; }
