// sanitize-dlclose.c: linked into every executable of a MOE_SANITIZE build only. Open MPI dlcloses
// its components at MPI_Finalize, so LeakSanitizer sees their allocations from "<unknown module>"
// and no suppression can name them. Keeping the modules mapped lets tests/lsan.supp suppress
// Open MPI's own leaks by library name while ours are still reported.
int dlclose(void *handle);
int dlclose(void *handle) {
    (void)handle;
    return 0;
}
