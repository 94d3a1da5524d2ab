// list.c: lists of items (names, problems, values) in fixed-size buffers that end at an item
// boundary with "... and N more" instead of in the middle of a word. The tail's room is kept
// back as items are added, so a list that does not fit gives up only the items it must.
#include "moe-common.h"

#include <stdarg.h>
#include <string.h>

#define MOE_LIST_TAIL "... and %d more"

// Writes the tail for l->more items left out (with the separator when items precede it) into
// out; returns its length, as snprintf.
static int moe_list_tail(const moe_list *l, char *out, size_t cap) {
    return snprintf(out, cap, "%s" MOE_LIST_TAIL, l->n ? l->sep : "", l->more);
}

void moe_list_start(moe_list *l, char *buf, size_t cap, const char *sep) {
    MOE_ASSERT(buf && cap > 0);
    l->buf = buf;
    l->cap = cap;
    l->len = strnlen(buf, cap - 1);
    l->buf[l->len] = '\0';
    l->sep = sep ? sep : "";
    l->n = l->kept_n = l->more = 0;
    l->kept_len = l->len;
    l->reserve = strlen(l->sep) + strlen(MOE_LIST_TAIL) + 10; // the longest tail: ten digits
}

void moe_list_add(moe_list *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    moe_list_vadd(l, fmt, ap);
    va_end(ap);
}

void moe_list_vadd(moe_list *l, const char *fmt, va_list ap) {
    if (l->more) { // full: every later item is left out too, so the list keeps its order
        l->more++;
        return;
    }
    const size_t sl = l->n ? strlen(l->sep) : 0;
    if (l->len + sl < l->cap) {
        memcpy(l->buf + l->len, l->sep, sl);
        const int w = vsnprintf(l->buf + l->len + sl, l->cap - l->len - sl, fmt, ap);
        if (w >= 0 && l->len + sl + (size_t)w < l->cap) {
            l->len += sl + (size_t)w;
            l->n++;
            if (l->len + l->reserve < l->cap) l->kept_len = l->len, l->kept_n = l->n;
            return;
        }
    }
    // It does not fit: this and every later item are left out; moe_list_end decides whether the
    // items past kept_len stay (when the tail fits after them) or give way to it.
    l->more = 1;
    l->buf[l->len] = '\0';
}

void moe_list_skip(moe_list *l, int n) {
    if (n > 0) l->more += n;
}

int moe_list_end(moe_list *l) {
    if (!l->more) return 0;
    const int w = moe_list_tail(l, NULL, 0);
    if (w < 0 || l->len + (size_t)w >= l->cap) { // the items after kept_len give way to the tail
        l->more += l->n - l->kept_n;
        l->n = l->kept_n;
        l->len = l->kept_len;
    }
    moe_list_tail(l, l->buf + l->len, l->cap - l->len);
    l->len += strnlen(l->buf + l->len, l->cap - l->len);
    return l->more;
}

int moe_list_more(const char *line) {
    static const char head[] = "... and ";
    if (strncmp(line, head, sizeof head - 1) != 0) return -1;
    const char *p = line + sizeof head - 1;
    int64_t n = 0;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((n = n * 10 + (*p - '0')) > INT32_MAX) return -1;
    return strcmp(p, " more") ? -1 : (int)n;
}

// A first line too long to leave room for the tail is itself cut, ending "..." (a message of one
// long line: nothing else can be done).
size_t moe_text_clip(char *out, size_t cap, const char *text) {
    MOE_ASSERT(out && cap > 0);
    const size_t len = strlen(text);
    if (len < cap) {
        memcpy(out, text, len + 1);
        return len;
    }
    // The last line may be the tail of an earlier list: its count carries over.
    const char *last = strrchr(text, '\n');
    const int earlier = last ? moe_list_more(last + 1) : -1;
    const char *end = earlier >= 0 ? last : text + len;
    out[0] = '\0';
    moe_list l;
    moe_list_start(&l, out, cap, "\n");
    for (const char *line = text;;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (line == text && n + l.reserve >= cap) {
            // The first line alone leaves no room for the tail: it is cut, and ends in "...".
            n = cap > l.reserve + 4 ? cap - l.reserve - 4 : 0;
            moe_list_add(&l, "%.*s...", (int)(n < INT32_MAX ? n : INT32_MAX), line);
        } else {
            moe_list_add(&l, "%.*s", (int)(n < INT32_MAX ? n : INT32_MAX), line);
        }
        if (!nl) break;
        line = nl + 1;
    }
    moe_list_skip(&l, earlier);
    moe_list_end(&l);
    return l.len;
}
