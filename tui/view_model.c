/* The Model view (configuration, parameters and bytes by tensor kind,
 * storage types, tokenizer, files, calibration and plan at a glance) and
 * the Log view (what ran, when, with what settings). */
#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>

#include <stdio.h>
#include <string.h>

#include "tui/draw.h"
#include "tui/views.h"
#include "tui/vmodel.h"

static void fmt_count(int64_t v, char *buf, size_t n) {
    if (v >= 1000000000) snprintf(buf, n, "%.2fB", v / 1e9);
    else if (v >= 1000000) snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 10000) snprintf(buf, n, "%.1fK", v / 1e3);
    else snprintf(buf, n, "%lld", (long long)v);
}

static void model_draw(const App *a, const Layout *l) {
    const Model *m = a->m;
    const ModelConfig *c = &m->cfg;
    const Rect *r = &l->main;
    int y = r->y, w = r->w - 2, x = r->x + 1;
    static const char *const fmts[] = {"GGUF", "Hugging Face", "llama2.c"};
    char b1[32], b2[32], b3[32];
    draw_text(y++, x, w, C_HEADER, "%s", a->model_name);
    draw_text(y++, x, w, C_NORMAL, "%s  (%s)", m->path, fmts[m->format]);
    if (r->h > 21) y++;
    draw_text(y++, x, w, C_NORMAL, "arch %s   dim %lld   hidden %lld   layers %lld   heads %lld (kv %lld, head_dim %lld)",
              c->arch, (long long)c->dim, (long long)c->hidden_dim, (long long)c->n_layers, (long long)c->n_heads,
              (long long)c->n_kv_heads, (long long)c->head_dim);
    fmt_count(model_param_count(m), b1, sizeof b1);
    draw_text(y++, x, w, C_NORMAL, "vocab %lld   context %lld   rope theta %g (%s pairs)", (long long)c->vocab_size,
              (long long)c->max_seq_len, c->rope_theta, c->rope_style == ROPE_NORM ? "consecutive" : "half");
    /* Architecture features beyond Llama 2's, only when present (so a plain model's screen is unchanged). */
    char feat[160] = "";
    size_t fl = 0;
    if (m->rope_freqs) fl += (size_t)snprintf(feat + fl, sizeof feat - fl, "   rope: Llama 3.1 factors");
    if (fl < sizeof feat && c->rope_freq_scale > 0.0f && c->rope_freq_scale != 1.0f)
        fl += (size_t)snprintf(feat + fl, sizeof feat - fl, "   rope: linear x%g", (double)c->rope_freq_scale);
    if (fl < sizeof feat && c->sliding_window > 0)
        fl += (size_t)snprintf(feat + fl, sizeof feat - fl, "   sliding window %lld", (long long)c->sliding_window);
    if (fl < sizeof feat && m->layers && m->layers[0].bias[PROJ_Q])
        snprintf(feat + fl, sizeof feat - fl, "   q/k/v biases");
    draw_text(y++, x, w, C_NORMAL, "norm eps %g   tied output head: %s%s", c->norm_eps, c->tied_embeddings ? "yes" : "no",
              feat);
    vm_fmt_bytes(m->file_bytes, b2, sizeof b2);
    vm_fmt_bytes(m->owned_bytes, b3, sizeof b3);
    draw_text(y++, x, w, C_NORMAL, "parameters %s   file %s   owned in memory %s", b1, b2, b3);
    draw_text(y++, x, w, C_DIM, "fingerprint %016llx", (unsigned long long)m->fingerprint);
    KindRow kr[8];
    int nk = vm_model_kinds(m, kr, 8);
    /* What must stay on screen (storage, tokenizer, text, calibration, stats,
     * plan, session) comes first: the blank lines go, then rows of the
     * tensor-kind table, so nothing runs into the key hints (80x24). */
    int tail = 5 + (a->cs && a->stats_path[0]) + (a->session_path[0] != 0);
    int room = r->y + r->h - y - tail;
    int gaps = room >= nk + 1 + 2 ? 2 : room >= nk + 1 + 1 ? 1 : 0;
    int rows = room - gaps - 1;
    if (rows > nk) rows = nk;
    if (gaps == 2) y++;
    if (rows > 0) draw_text(y++, x, w, C_HEADER, "%-12s %8s %12s %12s", "tensor kind", "tensors", "parameters", "file bytes");
    for (int i = 0; i < nk && i < rows; i++) {
        fmt_count(kr[i].params, b1, sizeof b1);
        vm_fmt_bytes(kr[i].bytes, b2, sizeof b2);
        draw_text(y++, x, w, C_NORMAL, "%-12s %8lld %12s %12s", kr[i].kind, (long long)kr[i].n_tensors, b1, b2);
    }
    DtypeRow dr[8];
    int nd = vm_model_dtypes(m, dr, 8);
    char dt[256] = "";
    size_t len = 0;
    for (int i = 0; i < nd; i++) {
        fmt_count(dr[i].params, b1, sizeof b1);
        len += (size_t)snprintf(dt + len, sizeof dt - len, "%s%s x%lld (%s)", i ? ", " : "", dr[i].name,
                                (long long)dr[i].n_tensors, b1);
        if (len >= sizeof dt) break;
    }
    draw_text(y++, x, w, C_NORMAL, "storage types: %s", dt);
    draw_text(y++, x, w, C_NORMAL, "tokenizer: %s", m->tok ? tokenizer_describe(m->tok) : "none");
    if (gaps >= 1) y++;
    if (a->text) {
        vm_fmt_bytes(a->text_len, b1, sizeof b1);
        draw_text(y++, x, w, C_NORMAL, "text: %s (%s)", a->text_path, b1);
    } else {
        draw_text(y++, x, w, C_WARN, "text: none (start with --text FILE to calibrate and evaluate)");
    }
    char sum[200], on[APP_PATH_MAX + 40] = "";
    if (a->calib_path[0]) { /* calibration on another text (--calib-text, C) */
        const char *cb = strrchr(a->calib_path, '/');
        vm_fmt_bytes(a->calib_len, b1, sizeof b1);
        snprintf(on, sizeof on, "; calibration text %s (%s)", cb ? cb + 1 : a->calib_path, b1);
    }
    app_calib_summary(a, sum, sizeof sum);
    if (sum[0]) draw_text(y++, x, w, app_calib_partial(a) ? C_WARN : C_NORMAL, "calibration: %s%s", sum, on);
    else draw_text(y++, x, w, C_WARN, "calibration: none yet - press c%s", on);
    if (a->cs && a->stats_path[0]) draw_text(y++, x, w, C_DIM, "stats: %s", a->stats_path);
    app_plan_summary(a, sum, sizeof sum);
    draw_text(y++, x, w, C_NORMAL, "plan: %s", sum);
    if (a->session_path[0]) draw_text(y++, x, w, C_DIM, "session: %s (saved after every action)", a->session_path);
}

static int model_key(App *a, Action act) {
    (void)a;
    (void)act;
    return R_UNHANDLED;
}

const ViewOps view_model_ops = {.draw = model_draw, .key = model_key};

/* === Log === */

/* Byte length of the next line of s when wrapped at tw columns (at a space
 * where possible); 0 at the end of s. */
static int log_wrap(const char *s, int tw) {
    int len = (int)strlen(s);
    if (draw_width(s) <= tw) return len;
    /* byte offset of the tw-th code point, then back to a space */
    int k = 0, cols = 0;
    while (s[k] && cols < tw) {
        k++;
        while (s[k] && ((unsigned char)s[k] & 0xC0) == 0x80) k++;
        cols++;
    }
    int cut = k;
    while (cut > 0 && s[cut] != ' ') cut--;
    return cut == 0 ? k : cut;
}

static int log_text_w(const Rect *r) {
    int tw = r->w - 2 - 24;
    return tw < 10 ? 10 : tw;
}

/* Screen lines entry i takes. */
static int log_lines(const App *a, int64_t i, int tw) {
    const char *s = a->log[i].text;
    int n = 0;
    do {
        s += log_wrap(s, tw);
        while (*s == ' ') s++;
        n++;
    } while (*s);
    return n;
}

/* First entry shown when following the end: the last ones that fit in vis lines. */
static int64_t log_first_at_end(const App *a, int tw, int vis) {
    int64_t first = a->n_log;
    int used = 0;
    while (first > 0) {
        int n = log_lines(a, first - 1, tw);
        if (used + n > vis && first < a->n_log) break;
        used += n;
        first--;
    }
    return first;
}

static void log_draw(const App *a, const Layout *l) {
    const Rect *r = &l->main;
    draw_text(r->y, r->x + 1, r->w - 2, C_HEADER, "%-8s  %-12s  %s", "time", "action", "settings and outcome");
    int vis = r->h - 1;
    if (a->n_log == 0) {
        draw_str(r->y + 1, r->x + 1, r->w - 2, C_DIM, "nothing has run yet");
        return;
    }
    int tw = log_text_w(r);
    /* log_scroll < 0: follow the end, so what just ran is on screen */
    int64_t first = a->log_scroll < 0 ? log_first_at_end(a, tw, vis) : a->log_scroll;
    int y = r->y + 1;
    for (int64_t i = first; i < a->n_log && y < r->y + 1 + vis; i++) {
        const LogLine *ln = &a->log[i];
        struct tm tm;
        localtime_r(&ln->when, &tm);
        char t[16];
        strftime(t, sizeof t, "%H:%M:%S", &tm);
        /* Wrap long settings over continuation lines, at spaces where possible. */
        const char *s = ln->text;
        draw_text(y, r->x + 1, 22, C_DIM, "%-8s  %-12.12s", t, ln->what);
        do {
            int cut = log_wrap(s, tw);
            char part[512];
            snprintf(part, sizeof part, "%.*s", cut, s);
            draw_str(y++, r->x + 25, tw, C_NORMAL, part);
            s += cut;
            while (*s == ' ') s++;
        } while (*s && y < r->y + 1 + vis);
    }
}

static int log_key(App *a, Action act) {
    int64_t cur = a->log_scroll;
    if (cur < 0) { /* leave follow mode from the entries on screen */
        Layout l;
        layout_screen(&l, COLS, LINES, 0);
        cur = log_first_at_end(a, log_text_w(&l.main), l.main.h - 1);
    }
    if (view_move(act, &cur, a->n_log > 0 ? a->n_log : 1, 10)) {
        a->log_scroll = act == AC_END ? -1 : cur;
        return R_REDRAW;
    }
    return R_UNHANDLED;
}

static void log_enter(App *a) {
    a->log_scroll = -1; /* show the latest entries, and keep following them */
}

const ViewOps view_log_ops = {.enter = log_enter, .draw = log_draw, .key = log_key};
