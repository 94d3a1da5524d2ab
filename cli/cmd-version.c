// cmd-version.c: `moe --version` — moe's version and the git revision captured at build time
// (cli/version.cmake), and every dependency's version as run (library call) and as compiled
// (header), so a bug report names what actually ran.
#include "cli.h"
#include "comm.h"

#include "moe-version.h"

#include <cblas.h>
#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <string.h>

// openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64".
static void moe_version_openblas(char *out, size_t cap) {
    const char *cfg = openblas_get_config();
    char ver[64] = "unknown";
    if (cfg && sscanf(cfg, "OpenBLAS %63s", ver) != 1) snprintf(ver, sizeof ver, "unknown");
#ifdef OPENBLAS_VERSION
    char hdr[64] = "?"; // " OpenBLAS 0.3.21 "
    if (sscanf(OPENBLAS_VERSION, " OpenBLAS %63s", hdr) != 1) snprintf(hdr, sizeof hdr, "?");
    snprintf(out, cap, "%s (%s; header %s)", ver, cfg ? cfg : "?", hdr);
#else
    snprintf(out, cap, "%s (%s)", ver, cfg ? cfg : "?");
#endif
}

void moe_cli_version(FILE *f) {
    char mpi[320], hwloc[128], blas[256];
    moe_comm_versions(mpi, sizeof mpi, hwloc, sizeof hwloc);
    moe_version_openblas(blas, sizeof blas);
    fprintf(f, "moe %s\n", MOE_VERSION);
    fprintf(f, "  git revision  %s\n", MOE_GIT_REVISION);
    fprintf(f, "  Open MPI      %s\n", mpi);
    fprintf(f, "  OpenBLAS      %s\n", blas);
    fprintf(f, "  hwloc         %s\n", hwloc);
    fprintf(f, "  protobuf-c    %s (header %s)\n", protobuf_c_version(), PROTOBUF_C_VERSION);
    fprintf(f, "  jansson       %s (header %s)\n", jansson_version_str(), JANSSON_VERSION);
}
