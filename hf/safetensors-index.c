// safetensors-index.c: sharded models (hf.h) — the shard plan, shard file names, and
// model.safetensors.index.json written and read.
#include "hf.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOE_ST_INDEX "model.safetensors.index.json"

int moe_st_shard_plan(const int64_t *bytes, int n, int64_t max_bytes, int *shard) {
    int k = 0;
    int64_t fill = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0)
            fill = bytes[0];
        else if (max_bytes > 0 && fill + bytes[i] > max_bytes)
            k++, fill = bytes[i];
        else
            fill += bytes[i];
        shard[i] = k;
    }
    return k + 1;
}

void moe_st_shard_name(char *buf, size_t cap, int i, int k) {
    if (k <= 1)
        snprintf(buf, cap, "model.safetensors");
    else
        snprintf(buf, cap, "model-%05d-of-%05d.safetensors", i + 1, k);
}

moe_status moe_st_index_write(const char *dir, const char *const *name, const int *shard, int n,
                              int k, int64_t total_size) {
    json_t *root = json_object(), *map = json_object();
    json_object_set_new(root, "metadata", json_pack("{s:I}", "total_size", (json_int_t)total_size));
    for (int i = 0; i < n; i++) {
        char file[64];
        moe_st_shard_name(file, sizeof file, shard[i], k);
        json_object_set_new(map, name[i], json_string(file));
    }
    json_object_set_new(root, "weight_map", map);
    char path[MOE_PATH_MAX], tmp[MOE_PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s", dir, MOE_ST_INDEX);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    MOE_ASSERT(text);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = f ? (fclose(f) == 0) && ok : 0;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return moe_set_error(MOE_EIO, "%s: cannot write (%s)", path, strerror(e));
    }
    return MOE_OK;
}

static moe_status bad_index(const char *path, const char *what, const char *key) {
    return moe_set_error(MOE_ECORRUPT, "%s: not a valid safetensors index: %s%s%s%s", path, what,
                         key ? " ('" : "", key ? key : "", key ? "')" : "");
}

static int is_file_name(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

moe_status moe_st_index_read(const char *dir, moe_st_index *out) {
    memset(out, 0, sizeof *out);
    out->total_size = -1;
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, MOE_ST_INDEX);
    char *text = NULL;
    size_t len = 0;
    moe_status st = moe_read_file(path, 64u << 20, &text, &len);
    if (st) return st;
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root) {
        char what[300];
        snprintf(what, sizeof what, "%s (line %d)", err.text, err.line);
        return bad_index(path, what, NULL);
    }
    json_t *map = json_object_get(root, "weight_map"), *meta = json_object_get(root, "metadata");
    json_t *ts = meta ? json_object_get(meta, "total_size") : NULL;
    if (!json_is_object(root) || !json_is_object(map))
        st = bad_index(path, "no \"weight_map\" object", NULL);
    else if (ts && (!json_is_integer(ts) || json_integer_value(ts) < 0))
        st = bad_index(path, "metadata.total_size is not a non-negative integer", NULL);
    if (!st) {
        out->total_size = ts ? json_integer_value(ts) : -1;
        out->name = moe_xcalloc(json_object_size(map) + 1, sizeof(char *));
        out->file = moe_xcalloc(json_object_size(map) + 1, sizeof(char *));
        const char *key;
        json_t *v;
        json_object_foreach(map, key, v) {
            if (!json_is_string(v) || !is_file_name(json_string_value(v))) {
                st = bad_index(path, "a weight_map value is not a file name of the directory", key);
                break;
            }
            out->name[out->n] = moe_xstrdup(key);
            out->file[out->n++] = moe_xstrdup(json_string_value(v));
        }
    }
    json_decref(root);
    if (st) moe_st_index_free(out);
    return st;
}

void moe_st_index_free(moe_st_index *ix) {
    for (int i = 0; i < ix->n; i++) free(ix->name[i]), free(ix->file[i]);
    free(ix->name), free(ix->file);
    memset(ix, 0, sizeof *ix);
}
