// test_data_input.c: data files that are not what the config says (issue 12). A FIFO, a
// directory or a device as data.path or data.val_path is refused at once, naming the field
// (defect 5: a FIFO hung forever; an alarm turns a hang into a failure); an llm.c token shard
// read as data.format = text is refused naming u16_tokens (defect 9c); a missing val_path names
// data.val_path, not data.path (defect 10).
#include "comm.h"
#include "data.h"
#include "test-util.h"

#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static moe_status try_open(const char *path, const char *val_path, int u16) {
    moe_data_params p = {.path = path,
                         .val_path = val_path,
                         .format = u16 ? MOE__DATA_CONFIG__FORMAT__u16_tokens
                                       : MOE__DATA_CONFIG__FORMAT__text,
                         .val_fraction = 0.1,
                         .vocab_size = u16 ? 50257 : 256,
                         .seq_len = 8,
                         .seed = 1};
    moe_data *d = NULL;
    alarm(20); // a hang (the FIFO of defect 5) fails the test instead of blocking it
    moe_status st = moe_data_open(&p, &d);
    alarm(0);
    moe_data_free(d);
    return st;
}

static void expect(const char *what, moe_status st, moe_status want, const char *n1, const char *n2,
                   const char *n3) {
    const char *msg = moe_last_error();
    CHECK(st == want, "%s: %s, expected %s (%s)", what, moe_status_str(st), moe_status_str(want),
          msg);
    if (st != MOE_OK) {
        const char *n[3] = {n1, n2, n3};
        for (int i = 0; i < 3; i++)
            CHECK(!n[i] || strstr(msg, n[i]), "%s: message lacks '%s': %s", what, n[i], msg);
    }
}

int main(void) {
    test_tmpdir(g_dir, sizeof g_dir, "data-input");
    static char text[4096];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
    FILE *f = fopen(tpath("good.txt"), "wb");
    fwrite(text, 1, sizeof text, f);
    fclose(f);
    OK(try_open(tpath("good.txt"), NULL, 0));
    // Defect 5: special files as data.path and data.val_path.
    MOE_ASSERT(mkfifo(tpath("fifo"), 0600) == 0);
    expect("FIFO as data.path", try_open(tpath("fifo"), NULL, 0), MOE_EIO, "fifo", "FIFO",
           "data.path");
    expect("FIFO as data.val_path", try_open(tpath("good.txt"), tpath("fifo"), 0), MOE_EIO, "fifo",
           "FIFO", "data.val_path");
    expect("directory as data.path", try_open(g_dir, NULL, 0), MOE_EIO, "a directory", "data.path",
           NULL);
    expect("directory as data.val_path", try_open(tpath("good.txt"), g_dir, 1 - 1), MOE_EIO,
           "a directory", "data.val_path", NULL);
    expect("device as data.path", try_open("/dev/zero", NULL, 0), MOE_EIO, "character device",
           "data.path", NULL);
    expect("device as data.val_path (u16)", try_open(tpath("good.txt"), "/dev/null", 0), MOE_EIO,
           "character device", "data.val_path", NULL);
    // Defect 10: a missing val_path names data.val_path.
    expect("missing val_path", try_open(tpath("good.txt"), tpath("nope.txt"), 0), MOE_EIO,
           "nope.txt", "set data.val_path", NULL);
    CHECK(!strstr(moe_last_error(), "set data.path"), "missing val_path blames data.path: %s",
          moe_last_error());
    // Defect 9c: an llm.c shard read as text.
    static uint16_t tok[2000];
    for (int i = 0; i < 2000; i++) tok[i] = (uint16_t)(i * 7 % 50000);
    OK(moe_data_write_u16(tpath("shard.bin"), tok, 2000));
    OK(try_open(tpath("shard.bin"), NULL, 1));
    expect("llm.c shard as text", try_open(tpath("shard.bin"), NULL, 0), MOE_EINVAL, "20240520",
           "data.format=u16_tokens", "shard.bin");
    expect("llm.c shard as text val_path", try_open(tpath("good.txt"), tpath("shard.bin"), 0),
           MOE_EINVAL, "20240520", "u16_tokens", NULL);
    test_rmtree(g_dir);
    return test_summary("test_data_input");
}
