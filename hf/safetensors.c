// safetensors.c: safetensors files read and written (hf.h), and the bf16/f16 conversions.
#include "hf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOE_ST_HEADER_MAX (100u << 20) // the format's own limit on the header (100 MB)

// ---------------------------------------------------------------- conversions

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t moe_f32_to_bf16(float x) {
    const uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); // quiet NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float moe_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t moe_f32_to_f16(float x) {
    const uint32_t all = f32_bits(x), sign = (all >> 16) & 0x8000u, u = all & 0x7fffffffu;
    if (u > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  // NaN
    if (u >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); // >= 65520 (and inf): inf
    if (u < 0x38800000u) // below 2^-14: a subnormal multiple of 2^-24, nearest even
        return (uint16_t)(sign | (uint32_t)nearbyintf(bits_f32(u) * 16777216.0f));
    uint32_t h = ((((u >> 23) - 127u + 15u)) << 10) | ((u & 0x7fffffu) >> 13);
    const uint32_t rem = u & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; // a carry moves into the exponent
    return (uint16_t)(sign | h);
}

float moe_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e - 15u + 127u) << 23) | (m << 13));
}

static const char *const dtype_names[] = {"F32", "BF16", "F16"};
static const int dtype_size[] = {4, 2, 2};

const char *moe_st_dtype_name(moe_st_dtype d) { return dtype_names[d]; }

int64_t moe_st_bytes(moe_st_dtype dtype, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n * dtype_size[dtype];
}

// ---------------------------------------------------------------- reading

static moe_status bad(const char *path, const char *what) {
    return moe_set_error(MOE_ECORRUPT, "%s: not a valid safetensors file: %s", path, what);
}

static int cmp_begin(const void *a, const void *b) {
    const moe_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// One tensor entry of the header into t; 0 or the refusal.
static moe_status parse_entry(const char *path, const char *name, json_t *v, moe_st_tensor *t) {
    char msg[512];
    if (!json_is_object(v)) {
        snprintf(msg, sizeof msg, "tensor '%s': its entry is not an object", name);
        return bad(path, msg);
    }
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets")) {
            snprintf(msg, sizeof msg, "tensor '%s': unknown field '%s'", name, key);
            return bad(path, msg);
        }
    }
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *of = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(of)) {
        snprintf(msg, sizeof msg,
                 "tensor '%s': needs \"dtype\" (a string), \"shape\" and \"data_offsets\" (lists)",
                 name);
        return bad(path, msg);
    }
    int d = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(json_string_value(dt), dtype_names[i])) d = i;
    if (d < 0) {
        snprintf(msg, sizeof msg, "tensor '%s': dtype %s is not one moe reads (F32, BF16, F16)",
                 name, json_string_value(dt));
        return bad(path, msg);
    }
    t->dtype = (moe_st_dtype)d;
    t->ndim = (int)json_array_size(sh);
    if (t->ndim > MOE_ST_MAX_DIMS) {
        snprintf(msg, sizeof msg, "tensor '%s': %d dimensions (at most %d)", name, t->ndim,
                 MOE_ST_MAX_DIMS);
        return bad(path, msg);
    }
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *s = json_array_get(sh, (size_t)i);
        if (!json_is_integer(s) || json_integer_value(s) < 0 ||
            (json_integer_value(s) > 0 && t->numel > INT64_MAX / 8 / json_integer_value(s))) {
            snprintf(msg, sizeof msg,
                     "tensor '%s': shape[%d] is not a non-negative integer "
                     "(or the shape's size overflows)",
                     name, i);
            return bad(path, msg);
        }
        t->shape[i] = json_integer_value(s);
        t->numel *= t->shape[i];
    }
    json_t *b = json_array_get(of, 0), *e = json_array_get(of, 1);
    if (json_array_size(of) != 2 || !json_is_integer(b) || !json_is_integer(e) ||
        json_integer_value(b) < 0 || json_integer_value(e) < json_integer_value(b)) {
        snprintf(msg, sizeof msg,
                 "tensor '%s': data_offsets must be [BEGIN, END], 0 <= BEGIN "
                 "<= END",
                 name);
        return bad(path, msg);
    }
    t->begin = (uint64_t)json_integer_value(b), t->end = (uint64_t)json_integer_value(e);
    if (t->end - t->begin != (uint64_t)(t->numel * dtype_size[d])) {
        snprintf(msg, sizeof msg,
                 "tensor '%s': data_offsets cover %llu bytes but %s x %lld "
                 "elements take %lld",
                 name, (unsigned long long)(t->end - t->begin), dtype_names[d], (long long)t->numel,
                 (long long)(t->numel * dtype_size[d]));
        return bad(path, msg);
    }
    t->name = moe_xstrdup(name);
    return MOE_OK;
}

static moe_status parse_meta(const char *path, json_t *v, moe_st_file *f) {
    if (!json_is_object(v)) return bad(path, "__metadata__ is not an object");
    f->meta_key = moe_xcalloc(json_object_size(v) + 1, sizeof(char *));
    f->meta_value = moe_xcalloc(json_object_size(v) + 1, sizeof(char *));
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x) {
        if (!json_is_string(x)) return bad(path, "__metadata__ holds a value that is not a string");
        f->meta_key[f->n_meta] = moe_xstrdup(key);
        f->meta_value[f->n_meta++] = moe_xstrdup(json_string_value(x));
    }
    // sort keys, values alongside (insertion sort: metadata are few)
    for (int i = 1; i < f->n_meta; i++)
        for (int j = i; j > 0 && strcmp(f->meta_key[j - 1], f->meta_key[j]) > 0; j--) {
            char *k = f->meta_key[j], *val = f->meta_value[j];
            f->meta_key[j] = f->meta_key[j - 1], f->meta_value[j] = f->meta_value[j - 1];
            f->meta_key[j - 1] = k, f->meta_value[j - 1] = val;
        }
    return MOE_OK;
}

// The tensors, sorted by offset, must tile the buffer exactly: no overlap, no hole.
static moe_status check_tiling(const moe_st_file *f) {
    char msg[512];
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const moe_st_tensor *t = &f->t[i];
        if (t->begin != at) {
            snprintf(msg, sizeof msg,
                     "tensor '%s' starts at byte %llu of the buffer, expected %llu "
                     "(%s)",
                     t->name, (unsigned long long)t->begin, (unsigned long long)at,
                     t->begin < at ? "it overlaps the one before" : "a hole before it");
            return bad(f->path, msg);
        }
        at = t->end;
    }
    if (at != f->data_size) {
        snprintf(msg, sizeof msg,
                 "the tensors end at byte %llu of the buffer but it has %llu "
                 "(%s)",
                 (unsigned long long)at, (unsigned long long)f->data_size,
                 at > f->data_size ? "truncated" : "trailing bytes");
        return bad(f->path, msg);
    }
    return MOE_OK;
}

static moe_status parse_header(moe_st_file *f, const char *text, size_t len) {
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        char msg[400];
        snprintf(msg, sizeof msg, "its JSON header: %s (at byte %d)", err.text, err.position);
        return bad(f->path, msg);
    }
    moe_status st = MOE_OK;
    if (!json_is_object(root)) st = bad(f->path, "the header is not a JSON object");
    f->t = moe_xcalloc(json_object_size(root) + 1, sizeof *f->t);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (st) break;
        if (!strcmp(key, "__metadata__"))
            st = parse_meta(f->path, v, f);
        else if (!(st = parse_entry(f->path, key, v, &f->t[f->n])))
            f->n++;
    }
    json_decref(root);
    if (st) return st;
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_begin);
    return check_tiling(f);
}

moe_status moe_st_open(const char *path, moe_st_file **out) {
    *out = NULL;
    moe_st_file *f = moe_xcalloc(1, sizeof *f);
    f->path = moe_xstrdup(path);
    moe_status st = MOE_OK;
    char *hdr = NULL;
    struct stat sb;
    unsigned char n8[8];
    if (!(f->f = fopen(path, "rb")) || fstat(fileno(f->f), &sb)) {
        st = moe_set_error(MOE_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = moe_set_error(MOE_EINVAL, "%s: not a regular file", path);
        goto done;
    }
    if (fread(n8, 1, 8, f->f) != 8) {
        st = bad(path, "shorter than the 8-byte header length");
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | n8[i];
    if (n > (uint64_t)sb.st_size - 8 || n > MOE_ST_HEADER_MAX || n < 2) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "header length %llu does not fit the file (%lld bytes) or the "
                 "format's 100 MB limit",
                 (unsigned long long)n, (long long)sb.st_size);
        st = bad(path, msg);
        goto done;
    }
    hdr = moe_xcalloc((size_t)n + 1, 1);
    if (fread(hdr, 1, (size_t)n, f->f) != (size_t)n) {
        st = moe_set_error(MOE_EIO, "%s: cannot read the header: %s", path, strerror(errno));
        goto done;
    }
    f->data_start = 8 + n;
    f->data_size = (uint64_t)sb.st_size - f->data_start;
    st = parse_header(f, hdr, (size_t)n);
done:
    free(hdr);
    if (st) {
        moe_st_close(f);
        return st;
    }
    *out = f;
    return MOE_OK;
}

void moe_st_close(moe_st_file *f) {
    if (!f) return;
    if (f->f) fclose(f->f);
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) free(f->meta_key[i]), free(f->meta_value[i]);
    free(f->t), free(f->meta_key), free(f->meta_value), free(f->path), free(f);
}

const moe_st_tensor *moe_st_find(const moe_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *moe_st_meta(const moe_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_key[i], key)) return f->meta_value[i];
    return NULL;
}

moe_status moe_st_read_f32(const moe_st_file *f, const moe_st_tensor *t, float *dst) {
    const size_t es = (size_t)dtype_size[t->dtype];
    if (fseeko(f->f, (off_t)(f->data_start + t->begin), SEEK_SET))
        return moe_set_error(MOE_EIO, "%s: seek: %s", f->path, strerror(errno));
    unsigned char buf[1 << 14];
    for (int64_t done = 0; done < t->numel;) {
        const size_t k = (size_t)(t->numel - done) < sizeof buf / es ? (size_t)(t->numel - done)
                                                                     : sizeof buf / es;
        if (fread(buf, es, k, f->f) != k)
            return ferror(f->f) ? moe_set_error(MOE_EIO, "%s: read: %s", f->path, strerror(errno))
                                : bad(f->path, "the file ended inside a tensor's data");
        for (size_t i = 0; i < k; i++) {
            const unsigned char *p = buf + i * es;
            if (t->dtype == MOE_ST_F32)
                dst[done + (int64_t)i] = bits_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                                  (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
            else {
                const uint16_t h = (uint16_t)(p[0] | p[1] << 8);
                dst[done + (int64_t)i] =
                    t->dtype == MOE_ST_BF16 ? moe_bf16_to_f32(h) : moe_f16_to_f32(h);
            }
        }
        done += (int64_t)k;
    }
    return MOE_OK;
}
