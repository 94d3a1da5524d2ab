// json-locate.c: finds the line:column of a value or key in JSON source text by following a
// path (object keys, array indices). jansson keeps no positions of parsed values, so after a
// successful parse we re-scan the text; the text is known to be valid, so the scanner is lenient.
#include "config-impl.h"

#include <string.h>

typedef struct {
    const char *s; // (n,)
    size_t n, i;
} moe_jscan;

static void moe_js_ws(moe_jscan *sc) {
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' || sc->s[sc->i] == '\n' ||
                             sc->s[sc->i] == '\r'))
        sc->i++;
}

static int moe_js_hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char ch = p[k];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t moe_js_utf8(unsigned cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Scans a string at sc->i (on the opening quote). With `want`, decodes it and reports whether it
// equals `want` (escapes resolved, so "top\u005fk" matches "top_k").
static int moe_js_string(moe_jscan *sc, const char *want) {
    size_t wlen = want ? strlen(want) : 0, w = 0;
    int eq = want != NULL;
    sc->i++; // opening quote
    while (sc->i < sc->n && sc->s[sc->i] != '"') {
        char buf[8];
        size_t blen = 1;
        if (sc->s[sc->i] == '\\' && sc->i + 1 < sc->n) {
            char e = sc->s[sc->i + 1];
            sc->i += 2;
            unsigned cp = 0;
            switch (e) {
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u':
                if (sc->i + 4 <= sc->n && moe_js_hex4(sc->s + sc->i, &cp) == 0) {
                    sc->i += 4;
                    unsigned lo;
                    if (cp >= 0xD800 && cp < 0xDC00 && sc->i + 6 <= sc->n && sc->s[sc->i] == '\\' &&
                        sc->s[sc->i + 1] == 'u' && moe_js_hex4(sc->s + sc->i + 2, &lo) == 0) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        sc->i += 6;
                    }
                }
                blen = moe_js_utf8(cp, buf);
                break;
            default: buf[0] = e; break; // \" \\ \/
            }
        } else {
            buf[0] = sc->s[sc->i++];
        }
        if (eq) {
            if (w + blen > wlen || memcmp(want + w, buf, blen) != 0) eq = 0;
            w += blen;
        }
    }
    sc->i++; // closing quote
    return eq && w == wlen;
}

static void moe_js_value(moe_jscan *sc);

static void moe_js_container(moe_jscan *sc, char close) {
    sc->i++;
    for (;;) {
        moe_js_ws(sc);
        if (sc->i >= sc->n) return;
        if (sc->s[sc->i] == close) {
            sc->i++;
            return;
        }
        if (sc->s[sc->i] == ',') {
            sc->i++;
            continue;
        }
        if (close == '}') {
            moe_js_string(sc, NULL);
            moe_js_ws(sc);
            if (sc->i < sc->n && sc->s[sc->i] == ':') sc->i++;
            moe_js_ws(sc);
        }
        moe_js_value(sc);
    }
}

// Skips one value starting at sc->i (no leading whitespace).
static void moe_js_value(moe_jscan *sc) {
    if (sc->i >= sc->n) return;
    char ch = sc->s[sc->i];
    if (ch == '"')
        moe_js_string(sc, NULL);
    else if (ch == '{')
        moe_js_container(sc, '}');
    else if (ch == '[')
        moe_js_container(sc, ']');
    else { // a scalar: up to a delimiter (memchr, not strchr: a NUL byte is not one), at least
           // one byte, so every caller's loop advances on any input
        const size_t at = sc->i;
        while (sc->i < sc->n && !memchr(",]} \t\r\n", sc->s[sc->i], 7)) sc->i++;
        if (sc->i == at) sc->i++;
    }
}

static void moe_js_linecol(const char *s, size_t at, moe_jpos *out) {
    int line = 1, col = 0;
    for (size_t k = 0; k < at; k++) {
        unsigned char ch = (unsigned char)s[k];
        if (ch == '\n') {
            line++;
            col = 0;
        } else if ((ch & 0xC0) != 0x80)
            col++;
    }
    out->line = line;
    out->column = col + 1;
}

int moe_json_locate(const char *text, size_t len, const moe_jseg *path, int depth, int want_key,
                    moe_jpos *out) {
    moe_jscan sc = {text, len, 0};
    moe_js_ws(&sc);
    for (int d = 0; d < depth; d++) {
        int last = d == depth - 1;
        if (sc.i >= sc.n) return -1;
        if (path[d].key) {
            if (sc.s[sc.i] != '{') return -1;
            sc.i++;
            int found = 0;
            while (!found) {
                moe_js_ws(&sc);
                if (sc.i >= sc.n || sc.s[sc.i] == '}') return -1;
                if (sc.s[sc.i] == ',') {
                    sc.i++;
                    continue;
                }
                size_t kstart = sc.i;
                found = moe_js_string(&sc, path[d].key);
                if (found && last && want_key) {
                    out->start = kstart;
                    out->end = sc.i;
                    moe_js_linecol(text, kstart, out);
                    return 0;
                }
                moe_js_ws(&sc);
                if (sc.i < sc.n && sc.s[sc.i] == ':') sc.i++;
                moe_js_ws(&sc);
                if (!found) moe_js_value(&sc);
            }
        } else {
            if (sc.s[sc.i] != '[') return -1;
            sc.i++;
            size_t idx = 0;
            for (;;) {
                moe_js_ws(&sc);
                if (sc.i >= sc.n || sc.s[sc.i] == ']') return -1;
                if (sc.s[sc.i] == ',') {
                    sc.i++;
                    continue;
                }
                if (idx == path[d].index) break;
                moe_js_value(&sc);
                idx++;
            }
            if (last && want_key) return -1; // array elements have no key
        }
    }
    out->start = sc.i;
    moe_js_value(&sc);
    out->end = sc.i;
    moe_js_linecol(text, out->start, out);
    return 0;
}
