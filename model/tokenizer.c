/* Tokenizers, reproducing llama.cpp's llama-vocab.cpp token for token:
 *   - "llama" (SPM): SentencePiece-BPE. Spaces become U+2581, a U+2581 is
 *     prefixed, the text is split into UTF-8 characters and the adjacent pair
 *     whose concatenation is the best-scoring vocab token is merged until none
 *     is left (ties: leftmost); leftover pieces fall back to <0xXX> tokens.
 *   - "gpt2" (byte-level BPE): a pre-tokenizer splits the text into words
 *     (model/tok_pretok.c), each word's bytes are mapped to GPT-2's printable
 *     codepoints and merged by merge rank (lowest first, ties leftmost).
 *   - "hf-spm": a Hugging Face tokenizer.json BPE with byte_fallback and the
 *     U+2581 normalizer (HF's Llama layout): merges by rank over the whole
 *     normalized text, characters missing from the vocab become <0xXX> tokens.
 * All three share one merge engine: symbols are byte spans of the text in a
 * linked list, candidate pairs sit in a binary heap, and a popped pair whose
 * sides have changed since it was pushed is skipped, so a whole 1 MB text is
 * merged in O(n log n); SPM texts are further cut where no token can span
 * (see "segment cuts"), which gives the same ids with a small heap. Before
 * tokenizing, user-defined tokens (and, with parse_special, control tokens)
 * are cut out of the text as llama.cpp's tokenizer_st_partition does.
 * Not reproduced: the per-model lstrip/rstrip token attributes llama.cpp sets
 * by model name (phi-3, jina, modern-bert); a vocabulary with duplicate
 * pieces, which llama.cpp rejects, keeps the first id here. */
#include "model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "core/jsontext.h"
#include "core/mapfile.h"
#include "model/tok_pretok.h"
#include "model/unicode.h"

typedef enum { MODE_SPM, MODE_BPE, MODE_HF_SPM } TokMode;

struct Tokenizer {
    TokMode mode;
    int64_t n_tokens;
    char *arena;             /* every piece, each NUL-terminated */
    size_t *off;             /* (n_tokens) piece offsets into arena */
    size_t *len;             /* (n_tokens) piece lengths */
    float *score;            /* (n_tokens) */
    uint8_t *type;           /* (n_tokens) TokType */
    int32_t *tok_table;      /* (tok_mask+1) open-addressing ids, -1 empty */
    uint64_t tok_mask;
    /* merges "left right": combined bytes in marena, split = len(left) */
    int64_t n_merges;
    char *marena;
    size_t *m_off;           /* (n_merges) */
    size_t *m_len;           /* (n_merges) combined length */
    size_t *m_split;         /* (n_merges) */
    int64_t *m_rank;         /* (n_merges) index in the source list */
    int32_t *m_table;        /* (m_mask+1) merge indices, -1 empty */
    uint64_t m_mask;
    uint64_t *pair_set;      /* (pair_mask+1) hashes of adjacent character pairs inside
                                tokens/merges; 0 empty (see split_points) */
    uint64_t pair_mask;
    int32_t *special;        /* (n_special) control/user-defined/unknown ids, longest first */
    int64_t n_special;
    int32_t byte_tok[256];   /* SPM/HF byte-fallback token per byte, -1 none */
    char b2u[256][2];        /* GPT-2 byte -> UTF-8 of its printable codepoint */
    uint8_t b2u_len[256];
    int32_t bos, eos, unk;
    int add_bos, add_space_prefix, ignore_merges;
    TokPre pre;
    char desc[128];
};

/* === vocabulary tables ================================================ */

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static uint64_t span_hash(const char *s, size_t n) { return hash_bytes(HASH_SEED, s, n); }

/* Returns the id of the token whose text is s[0..n), or -1. */
static int32_t tok_lookup(const Tokenizer *t, const char *s, size_t n) {
    uint64_t i = span_hash(s, n) & t->tok_mask;
    for (;;) {
        int32_t id = t->tok_table[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->tok_mask;
    }
}

static uint64_t merge_hash(const char *s, size_t n, size_t split) {
    return span_hash(s, n) ^ ((uint64_t)(split + 1) * 0x9E3779B97F4A7C15ull);
}

/* Returns the rank of the merge (s[0..split), s[split..n)), or -1. */
static int64_t merge_lookup(const Tokenizer *t, const char *s, size_t n, size_t split) {
    if (!t->m_table) return -1;
    uint64_t i = merge_hash(s, n, split) & t->m_mask;
    for (;;) {
        int32_t m = t->m_table[i];
        if (m < 0) return -1;
        if (t->m_len[m] == n && t->m_split[m] == split && memcmp(t->marena + t->m_off[m], s, n) == 0)
            return t->m_rank[m];
        i = (i + 1) & t->m_mask;
    }
}

/* === segment cuts ===================================================== */

/* Merging the whole text as one symbol list is what llama.cpp does, but a
 * merge can only ever join characters c1|c2 at a position if some token (or,
 * for merge-rank tokenizers, some merge) contains c1 immediately followed by
 * c2. Where no piece does, no symbol can ever span that boundary, so the two
 * sides evolve independently and merging them separately gives the same ids
 * while keeping the heap small. pair_set holds a hash of every adjacent
 * character pair inside the pieces; a hash collision only removes a cut,
 * which is always safe. */

static uint64_t char_pair_hash(const char *a, size_t na, const char *b, size_t nb) {
    uint64_t x = na, y = nb;
    for (size_t i = 0; i < na; i++) x = x << 8 | (unsigned char)a[i];
    for (size_t i = 0; i < nb; i++) y = y << 8 | (unsigned char)b[i];
    uint64_t h = (x * 0x9E3779B97F4A7C15ull) ^ (y + 0x632BE59BD9B4E019ull + (x >> 17));
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return h | 1; /* 0 marks an empty slot */
}

static int pair_set_has(const Tokenizer *t, uint64_t h) {
    for (uint64_t i = h & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        if (t->pair_set[i] == h) return 1;
        if (t->pair_set[i] == 0) return 0;
    }
}

/* Adds the adjacent character pairs of s[0..n) (split as the tokenizer splits text). */
static void pair_set_add_piece(Tokenizer *t, const char *s, size_t n, int64_t *count) {
    size_t prev = 0, prev_n = 0;
    for (size_t off = 0; off < n;) {
        size_t c = unicode_len_utf8((unsigned char)s[off]);
        if (c > n - off) c = n - off;
        if (prev_n) {
            uint64_t h = char_pair_hash(s + prev, prev_n, s + off, c);
            uint64_t i = h & t->pair_mask;
            while (t->pair_set[i] != 0 && t->pair_set[i] != h) i = (i + 1) & t->pair_mask;
            if (t->pair_set[i] == 0) { t->pair_set[i] = h; (*count)++; }
        }
        prev = off;
        prev_n = c;
        off += c;
    }
}

static Status build_pair_set(Tokenizer *t, Err *err, const char *src) {
    size_t chars = 0;
    for (int64_t i = 0; i < t->n_tokens; i++) chars += t->len[i];
    for (int64_t m = 0; m < t->n_merges; m++) chars += t->m_len[m];
    t->pair_mask = pow2_at_least((uint64_t)chars * 2 + 16) - 1;
    t->pair_set = calloc(t->pair_mask + 1, sizeof *t->pair_set);
    if (!t->pair_set) return err_set(err, ST_ERR_NOMEM, "%s: pair set", src);
    int64_t count = 0;
    for (int64_t i = 0; i < t->n_tokens; i++) pair_set_add_piece(t, t->arena + t->off[i], t->len[i], &count);
    for (int64_t m = 0; m < t->n_merges; m++) pair_set_add_piece(t, t->marena + t->m_off[m], t->m_len[m], &count);
    return ST_OK;
}

/* === merge engine ===================================================== */

typedef struct Sym {
    int64_t start, n;        /* byte span in the word; n == 0 once merged away */
    int64_t prev, next;      /* -1 at the ends */
    int opaque;              /* hf-spm: a character missing from the vocab (never merges) */
} Sym;

typedef struct Bigram {
    double key;              /* higher merges first: SPM score, or -rank */
    int64_t left, right;
    int64_t size;            /* combined byte length when pushed (staleness check) */
} Bigram;

typedef struct IdVec {
    int32_t *v;
    int64_t n, cap;
    int oom;
} IdVec;

typedef struct Session {
    const Tokenizer *t;
    Sym *sym;
    int64_t n_sym, cap_sym;
    Bigram *heap;
    int64_t n_heap, cap_heap;
    int oom;
} Session;

static void ids_push(IdVec *v, int32_t id) {
    if (v->oom) return;
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *p = realloc(v->v, (size_t)cap * sizeof *p);
        if (!p) { v->oom = 1; return; }
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = id;
}

/* a pops before b? Best key first, then the leftmost pair (llama.cpp's order). */
static int bigram_before(const Bigram *a, const Bigram *b) {
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static void heap_push(Session *s, Bigram b) {
    if (s->oom) return;
    if (s->n_heap == s->cap_heap) {
        int64_t cap = s->cap_heap ? s->cap_heap * 2 : 256;
        Bigram *p = realloc(s->heap, (size_t)cap * sizeof *p);
        if (!p) { s->oom = 1; return; }
        s->heap = p;
        s->cap_heap = cap;
    }
    int64_t i = s->n_heap++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = b;
}

static Bigram heap_pop(Session *s) {
    Bigram top = s->heap[0], last = s->heap[--s->n_heap];
    int64_t i = 0, n = s->n_heap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bigram_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

static void try_pair(Session *s, const char *w, int64_t l, int64_t r) {
    if (l < 0 || r < 0) return;
    const Sym *a = &s->sym[l], *b = &s->sym[r];
    if (a->opaque || b->opaque) return;
    const char *span = w + a->start;
    size_t n = (size_t)(a->n + b->n);
    Bigram bg = {0, l, r, (int64_t)n};
    if (s->t->mode == MODE_SPM) {
        int32_t id = tok_lookup(s->t, span, n);
        if (id < 0) return;
        bg.key = s->t->score[id];
    } else {
        int64_t rank = merge_lookup(s->t, span, n, (size_t)a->n);
        if (rank < 0) return;
        bg.key = -(double)rank;
    }
    heap_push(s, bg);
}

/* Emits the byte-fallback tokens for bytes p[0..n); returns 0 if some byte has
 * no token. */
static int emit_bytes(const Tokenizer *t, const unsigned char *p, int64_t n, IdVec *out, int dry) {
    for (int64_t i = 0; i < n; i++) {
        if (t->byte_tok[p[i]] < 0) return 0;
        if (!dry) ids_push(out, t->byte_tok[p[i]]);
    }
    return 1;
}

/* Merges one word w[0..wlen) and appends its ids. */
static void merge_word(Session *s, const char *w, int64_t wlen, IdVec *out) {
    const Tokenizer *t = s->t;
    s->n_sym = 0;
    s->n_heap = 0;
    if (wlen <= 0) return;
    if (wlen > s->cap_sym) {
        Sym *p = realloc(s->sym, (size_t)wlen * sizeof *p);
        if (!p) { s->oom = 1; return; }
        s->sym = p;
        s->cap_sym = wlen;
    }
    for (int64_t off = 0; off < wlen;) {
        int64_t n = (int64_t)unicode_len_utf8((unsigned char)w[off]);
        if (n > wlen - off) n = wlen - off;
        Sym *y = &s->sym[s->n_sym];
        y->start = off;
        y->n = n;
        y->prev = s->n_sym - 1;
        off += n;
        y->next = off == wlen ? -1 : s->n_sym + 1;
        y->opaque = t->mode == MODE_HF_SPM && tok_lookup(t, w + y->start, (size_t)n) < 0;
        s->n_sym++;
    }
    for (int64_t i = 1; i < s->n_sym; i++) try_pair(s, w, i - 1, i);
    while (s->n_heap > 0 && !s->oom) {
        Bigram bg = heap_pop(s);
        Sym *l = &s->sym[bg.left], *r = &s->sym[bg.right];
        /* Symbols only grow, so unchanged sizes mean an unchanged pair. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = bg.left;
        try_pair(s, w, l->prev, bg.left);
        try_pair(s, w, bg.left, l->next);
    }
    if (s->oom) return;
    /* Symbol 0 is never merged away (merges fold right into left). A final
     * symbol that is not a token can only be a single unmerged character, so
     * llama.cpp's rev_merge re-segmentation reduces to the byte fallback. */
    int prev_unk = 0;
    for (int64_t i = 0; i != -1; i = s->sym[i].next) {
        const Sym *y = &s->sym[i];
        const char *p = w + y->start;
        int32_t id = y->opaque ? -1 : tok_lookup(t, p, (size_t)y->n);
        if (id >= 0) {
            ids_push(out, id);
            prev_unk = 0;
            continue;
        }
        if (t->mode == MODE_BPE) {
            for (int64_t j = 0; j < y->n; j++) {
                int32_t b = tok_lookup(t, p + j, 1);
                if (b >= 0) ids_push(out, b);
            }
        } else if (t->mode == MODE_SPM) {
            for (int64_t j = 0; j < y->n; j++) {
                int32_t b = t->byte_tok[(unsigned char)p[j]];
                if (b < 0) b = t->unk;
                if (b >= 0) ids_push(out, b);
            }
        } else if (emit_bytes(t, (const unsigned char *)p, y->n, out, 1)) {
            emit_bytes(t, (const unsigned char *)p, y->n, out, 0);
            prev_unk = 0;
        } else if (t->unk >= 0 && !prev_unk) { /* fuse_unk */
            ids_push(out, t->unk);
            prev_unk = 1;
        }
    }
}

/* === encode =========================================================== */

typedef struct Frag {
    int32_t id;              /* token fragment: its id; raw text: -1 */
    int64_t off, len;        /* raw text span */
} Frag;

typedef struct FragVec {
    Frag *v;
    int64_t n, cap;
} FragVec;

static int frags_push(FragVec *f, Frag x) {
    if (f->n == f->cap) {
        int64_t cap = f->cap ? f->cap * 2 : 16;
        Frag *p = realloc(f->v, (size_t)cap * sizeof *p);
        if (!p) return 0;
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return 1;
}

/* Cuts special tokens out of the raw text, longest token first. */
static int partition(const Tokenizer *t, const char *text, size_t len, int parse_special, FragVec *out) {
    FragVec cur = {0}, nxt = {0};
    if (!frags_push(&cur, (Frag){-1, 0, (int64_t)len})) return 0;
    for (int64_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        int ty = t->type[id];
        if (!parse_special && (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN)) continue;
        const char *pat = t->arena + t->off[id];
        size_t plen = t->len[id];
        if (plen == 0) continue;
        nxt.n = 0;
        for (int64_t i = 0; i < cur.n; i++) {
            Frag f = cur.v[i];
            if (f.id >= 0) {
                if (!frags_push(&nxt, f)) goto fail;
                continue;
            }
            int64_t pos = f.off, end = f.off + f.len;
            for (;;) {
                const char *hit = memmem(text + pos, (size_t)(end - pos), pat, plen);
                if (!hit) break;
                int64_t at = hit - text;
                if (at > pos && !frags_push(&nxt, (Frag){-1, pos, at - pos})) goto fail;
                if (!frags_push(&nxt, (Frag){id, 0, 0})) goto fail;
                pos = at + (int64_t)plen;
            }
            if (end > pos && !frags_push(&nxt, (Frag){-1, pos, end - pos})) goto fail;
        }
        FragVec tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    free(nxt.v);
    *out = cur;
    return 1;
fail:
    free(cur.v);
    free(nxt.v);
    return 0;
}

static const char SPACE_MARK[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */

/* SPM and hf-spm: escape spaces, optionally prefix U+2581, merge the whole fragment. */
static Status encode_spm_fragment(Session *s, const char *p, int64_t n, int prefix, IdVec *out, Err *err) {
    int64_t spaces = 0;
    for (int64_t i = 0; i < n; i++) spaces += p[i] == ' ';
    int64_t wlen = n + 2 * spaces + (prefix ? 3 : 0);
    char *w = wlen > 0 ? malloc((size_t)wlen) : NULL;
    if (!w) return err_set(err, ST_ERR_NOMEM, "tokenize: %lld bytes", (long long)n);
    int64_t k = 0;
    if (prefix) { memcpy(w, SPACE_MARK, 3); k = 3; }
    for (int64_t i = 0; i < n; i++) {
        if (p[i] == ' ') { memcpy(w + k, SPACE_MARK, 3); k += 3; }
        else w[k++] = p[i];
    }
    /* Merge each stretch between cuts on its own (see build_pair_set). */
    const Tokenizer *t = s->t;
    int64_t seg = 0, prev = 0, prev_n = 0;
    for (int64_t off = 0; off < wlen && !s->oom;) {
        int64_t c = (int64_t)unicode_len_utf8((unsigned char)w[off]);
        if (c > wlen - off) c = wlen - off;
        if (prev_n && !pair_set_has(t, char_pair_hash(w + prev, (size_t)prev_n, w + off, (size_t)c))) {
            merge_word(s, w + seg, off - seg, out);
            seg = off;
        }
        prev = off;
        prev_n = c;
        off += c;
    }
    merge_word(s, w + seg, wlen - seg, out);
    free(w);
    return ST_OK;
}

/* Byte-level BPE: decode, pre-tokenize, byte-encode and merge each word. */
static Status encode_bpe_fragment(Session *s, const char *p, int64_t n, IdVec *out, Err *err) {
    const Tokenizer *t = s->t;
    Status st = ST_OK;
    uint32_t *cp = malloc(((size_t)n + 1) * sizeof *cp);
    char *w = malloc((size_t)n * 8 + 16);
    int64_t *lens = NULL, n_words = 0, n_cp = 0;
    if (!cp || !w) { st = err_set(err, ST_ERR_NOMEM, "tokenize: %lld bytes", (long long)n); goto fail; }
    /* HF ByteLevel add_prefix_space: a space before a section not starting with one. */
    if (t->add_space_prefix == TOK_PREFIX_META_ALWAYS && p[0] != ' ') cp[n_cp++] = ' ';
    for (int64_t i = 0; i < n;) {
        i += (int64_t)unicode_decode_utf8((const unsigned char *)p + i, (size_t)(n - i), &cp[n_cp]);
        n_cp++;
    }
    st = tok_pretok_split(t->pre, cp, n_cp, &lens, &n_words, err);
    if (st != ST_OK) goto fail;
    int64_t c0 = 0;
    for (int64_t wi = 0; wi < n_words; wi++) {
        int64_t k = 0;
        for (int64_t c = c0; c < c0 + lens[wi]; c++) {
            char u[4];
            size_t m = unicode_encode_utf8(cp[c], u);
            for (size_t j = 0; j < m; j++) {
                unsigned char b = (unsigned char)u[j];
                memcpy(w + k, t->b2u[b], t->b2u_len[b]);
                k += t->b2u_len[b];
            }
        }
        c0 += lens[wi];
        int32_t whole;
        if (t->ignore_merges && (whole = tok_lookup(t, w, (size_t)k)) >= 0) {
            ids_push(out, whole);
            continue;
        }
        merge_word(s, w, k, out);
        if (s->oom) break;
    }
fail:
    free(cp);
    free(w);
    free(lens);
    return st;
}

Status tokenizer_encode_ex(const Tokenizer *t, const char *text, size_t len, int add_bos,
                           int parse_special, int32_t **ids, int64_t *n, Err *err) {
    *ids = NULL;
    *n = 0;
    if (!t || (!text && len)) return err_set(err, ST_ERR_ARG, "tokenize: no tokenizer or text");
    int bos = add_bos < 0 ? t->add_bos : add_bos;
    if (bos && t->bos < 0) return err_set(err, ST_ERR_STATE, "tokenize: BOS requested but the vocab has none");
    IdVec out = {0};
    Session s = {.t = t};
    FragVec frags = {0};
    Status st = ST_OK;
    if (bos) ids_push(&out, t->bos);
    if (len > 0 && !partition(t, text, len, parse_special, &frags)) {
        st = err_set(err, ST_ERR_NOMEM, "tokenize: fragment list");
        goto done;
    }
    int prev_special = 1; /* the start counts as "after a special token" */
    for (int64_t i = 0; i < frags.n && st == ST_OK; i++) {
        const Frag *f = &frags.v[i];
        if (f->id >= 0) {
            ids_push(&out, f->id);
            prev_special = 1;
            continue;
        }
        if (t->mode == MODE_BPE) {
            st = encode_bpe_fragment(&s, text + f->off, f->len, &out, err);
        } else {
            int prefix = t->add_space_prefix != TOK_PREFIX_NONE && prev_special;
            if (t->add_space_prefix >= TOK_PREFIX_META_ALWAYS && text[f->off] == ' ') prefix = 0;
            if (t->add_space_prefix == TOK_PREFIX_META_FIRST && f->off != 0) prefix = 0;
            st = encode_spm_fragment(&s, text + f->off, f->len, prefix, &out, err);
        }
        prev_special = 0;
    }
    if (st == ST_OK && (out.oom || s.oom)) st = err_set(err, ST_ERR_NOMEM, "tokenize: %zu bytes of text", len);
done:
    free(frags.v);
    free(s.sym);
    free(s.heap);
    if (st != ST_OK) {
        free(out.v);
        return st;
    }
    if (!out.v) out.v = malloc(sizeof(int32_t)); /* a non-NULL empty result */
    if (!out.v) return err_set(err, ST_ERR_NOMEM, "tokenize");
    *ids = out.v;
    *n = out.n;
    return ST_OK;
}

Status tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_bos,
                        int32_t **ids, int64_t *n, Err *err) {
    return tokenizer_encode_ex(t, text, len, add_bos, 0, ids, n, err);
}

/* === decode =========================================================== */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Parses "<0xXX>"; returns the byte or -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static size_t put(char *buf, size_t cap, size_t k, const char *s, size_t n) {
    for (size_t i = 0; i < n && k < cap; i++) buf[k++] = s[i];
    return k;
}

size_t tokenizer_decode(const Tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (!t || id < 0 || id >= t->n_tokens) return 0;
    const char *p = t->arena + t->off[id];
    size_t n = t->len[id], k = 0;
    switch (t->type[id]) {
    case TOK_TYPE_USER_DEFINED: return put(buf, cap, 0, p, n);
    case TOK_TYPE_BYTE: {
        int b = parse_byte_piece(p, n);
        if (b < 0) return put(buf, cap, 0, p, n);
        char c = (char)b;
        return put(buf, cap, 0, &c, 1);
    }
    case TOK_TYPE_NORMAL: break;
    default: return 0; /* control, unknown, unused: nothing, as llama.cpp without `special` */
    }
    if (t->mode != MODE_BPE) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(p + i, SPACE_MARK, 3) == 0) {
                k = put(buf, cap, k, " ", 1);
                i += 3;
            } else {
                k = put(buf, cap, k, p + i, 1);
                i++;
            }
        }
        return k;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t m = unicode_decode_utf8((const unsigned char *)p + i, n - i, &cp);
        int b = unicode_cpt_to_byte(cp);
        if (b >= 0) {
            char c = (char)b;
            k = put(buf, cap, k, &c, 1);
        } else {
            k = put(buf, cap, k, p + i, m); /* not a byte-level character: keep it */
        }
        i += m;
    }
    return k;
}

Status tokenizer_detokenize(const Tokenizer *t, const int32_t *ids, int64_t n, char **out,
                            size_t *len, Err *err) {
    *out = NULL;
    *len = 0;
    size_t total = 1;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_tokens) total += t->len[ids[i]];
    /* A decoded piece is never longer than its stored piece. */
    char *s = malloc(total);
    if (!s) return err_set(err, ST_ERR_NOMEM, "detokenize: %zu bytes", total);
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) k += tokenizer_decode(t, ids[i], s + k, total - 1 - k);
    s[k] = 0;
    *out = s;
    *len = k;
    return ST_OK;
}

/* === accessors ======================================================== */

const char *tokenizer_piece(const Tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_tokens) return "";
    return t->arena + t->off[id];
}

int64_t tokenizer_vocab_size(const Tokenizer *t) { return t ? t->n_tokens : 0; }
int32_t tokenizer_bos(const Tokenizer *t) { return t ? t->bos : -1; }
int32_t tokenizer_eos(const Tokenizer *t) { return t ? t->eos : -1; }
TokKind tokenizer_kind(const Tokenizer *t) { return t && t->mode == MODE_BPE ? TOK_BPE : TOK_SPM; }
const char *tokenizer_describe(const Tokenizer *t) { return t ? t->desc : ""; }
int tokenizer_add_bos(const Tokenizer *t) { return t ? t->add_bos : 0; }

void tokenizer_gguf_info(const Tokenizer *t, TokGgufInfo *out) {
    out->model = t->mode == MODE_BPE ? "gpt2" : "llama";
    out->pre = t->mode == MODE_BPE ? tok_pretok_name(t->pre) : NULL;
    out->bos = t->bos;
    out->eos = t->eos;
    out->unk = t->unk;
    out->add_bos = t->add_bos;
    out->add_space_prefix = t->add_space_prefix != TOK_PREFIX_NONE;
}

void tokenizer_gguf_scores(const Tokenizer *t, float *out) {
    if (t->mode == MODE_SPM) {
        memcpy(out, t->score, (size_t)t->n_tokens * sizeof *out);
        return;
    }
    for (int64_t i = 0; i < t->n_tokens; i++) out[i] = t->mode == MODE_HF_SPM ? -1e9f : 0.0f;
    if (t->mode != MODE_HF_SPM) return;
    for (int64_t m = t->n_merges - 1; m >= 0; m--) { /* the lowest rank writes last */
        int32_t id = tok_lookup(t, t->marena + t->m_off[m], t->m_len[m]);
        if (id >= 0) out[id] = -(float)t->m_rank[m];
    }
}

int64_t tokenizer_n_merges(const Tokenizer *t) { return t ? t->n_merges : 0; }

size_t tokenizer_merge_text(const Tokenizer *t, int64_t i, char *buf, size_t cap) {
    if (!t || i < 0 || i >= t->n_merges || cap == 0) return 0;
    const char *s = t->marena + t->m_off[i];
    size_t split = t->m_split[i], n = t->m_len[i] + 1;
    for (size_t k = 0, o = 0; k < n && o + 1 < cap; k++, o++) buf[o] = k < split ? s[k] : k == split ? ' ' : s[k - 1];
    buf[n < cap ? n : cap - 1] = '\0';
    return n;
}

int tokenizer_token_type(const Tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_tokens) return 0;
    return t->type[id];
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->tok_table);
    free(t->marena);
    free(t->m_off);
    free(t->m_len);
    free(t->m_split);
    free(t->m_rank);
    free(t->m_table);
    free(t->special);
    free(t->pair_set);
    free(t);
}

/* === construction ===================================================== */

static const char *src_name(const TokVocab *v) { return v->source ? v->source : "vocab"; }

static Status build_merges(Tokenizer *t, const TokVocab *v, Err *err) {
    size_t bytes = 1;
    for (int64_t i = 0; i < v->n_merges; i++) bytes += v->merges[i].len;
    t->marena = malloc(bytes);
    t->m_off = calloc((size_t)v->n_merges + 1, sizeof(size_t));
    t->m_len = calloc((size_t)v->n_merges + 1, sizeof(size_t));
    t->m_split = calloc((size_t)v->n_merges + 1, sizeof(size_t));
    t->m_rank = calloc((size_t)v->n_merges + 1, sizeof(int64_t));
    t->m_mask = pow2_at_least((uint64_t)v->n_merges * 2) - 1;
    t->m_table = malloc((t->m_mask + 1) * sizeof(int32_t));
    if (!t->marena || !t->m_off || !t->m_len || !t->m_split || !t->m_rank || !t->m_table)
        return err_set(err, ST_ERR_NOMEM, "%s: %lld merges", src_name(v), (long long)v->n_merges);
    memset(t->m_table, 0xFF, (t->m_mask + 1) * sizeof(int32_t));
    size_t pos = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < v->n_merges; i++) {
        const char *s = v->merges[i].s;
        size_t n = v->merges[i].len;
        /* llama.cpp splits at the first space after the first byte. */
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp) continue; /* not "left right": can never apply */
        size_t split = (size_t)(sp - s);
        memcpy(t->marena + pos, s, split);
        memcpy(t->marena + pos + split, sp + 1, n - split - 1);
        size_t cn = n - 1;
        if (merge_lookup(t, t->marena + pos, cn, split) >= 0) continue; /* first rank wins */
        t->m_off[m] = pos;
        t->m_len[m] = cn;
        t->m_split[m] = split;
        t->m_rank[m] = i;
        uint64_t h = merge_hash(t->marena + pos, cn, split) & t->m_mask;
        while (t->m_table[h] >= 0) h = (h + 1) & t->m_mask;
        t->m_table[h] = (int32_t)m;
        pos += cn;
        m++;
    }
    t->n_merges = m;
    return ST_OK;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const Tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return (x > y) - (x < y);
}

Status tokenizer_from_vocab(const TokVocab *v, Tokenizer **out, Err *err) {
    *out = NULL;
    const char *src = src_name(v);
    TokMode mode;
    if (!v->model) return err_set(err, ST_ERR_ARG, "%s: no tokenizer model", src);
    if (strcmp(v->model, "llama") == 0) mode = MODE_SPM;
    else if (strcmp(v->model, "gpt2") == 0) mode = MODE_BPE;
    else if (strcmp(v->model, "hf-spm") == 0) mode = MODE_HF_SPM;
    else return err_set(err, ST_ERR_UNSUPPORTED, "%s: tokenizer model '%s' (expected llama or gpt2)", src, v->model);
    if (v->n_tokens <= 0 || v->n_tokens > INT32_MAX)
        return err_set(err, ST_ERR_FORMAT, "%s: vocabulary of %lld tokens", src, (long long)v->n_tokens);
    if (v->n_merges < 0 || v->n_merges > INT32_MAX)
        return err_set(err, ST_ERR_FORMAT, "%s: %lld merges", src, (long long)v->n_merges);
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, ST_ERR_NOMEM, "%s: tokenizer", src);
    Status st = ST_OK;
    int64_t n = v->n_tokens;
    t->mode = mode;
    t->n_tokens = n;
    t->pre = TOK_PRE_DEFAULT;
    if (mode == MODE_BPE && v->pre && !tok_pretok_parse(v->pre, strlen(v->pre), &t->pre)) {
        st = err_set(err, ST_ERR_UNSUPPORTED, "%s: pre-tokenizer '%s' (known: default, gpt-2, llama-bpe, qwen2, "
                     "deepseek-llm, deepseek-coder, falcon, starcoder and their aliases)", src, v->pre);
        goto fail;
    }
    size_t bytes = 0;
    for (int64_t i = 0; i < n; i++) bytes += v->tokens[i].len + 1;
    t->arena = malloc(bytes);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->score = malloc((size_t)n * sizeof *t->score);
    t->type = malloc((size_t)n);
    t->tok_mask = pow2_at_least((uint64_t)n * 2) - 1;
    t->tok_table = malloc((t->tok_mask + 1) * sizeof(int32_t));
    t->special = malloc((size_t)n * sizeof *t->special);
    if (!t->arena || !t->off || !t->len || !t->score || !t->type || !t->tok_table || !t->special) {
        st = err_set(err, ST_ERR_NOMEM, "%s: %lld tokens", src, (long long)n);
        goto fail;
    }
    memset(t->tok_table, 0xFF, (t->tok_mask + 1) * sizeof(int32_t));
    size_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t len = v->tokens[i].len;
        if (len) memcpy(t->arena + pos, v->tokens[i].s, len);
        t->arena[pos + len] = 0;
        t->off[i] = pos;
        t->len[i] = len;
        t->score[i] = v->scores ? v->scores[i] : 0.0f;
        int32_t ty = v->types ? v->types[i] : TOK_TYPE_NORMAL;
        t->type[i] = (uint8_t)(ty >= TOK_TYPE_NORMAL && ty <= TOK_TYPE_BYTE ? ty : 0);
        pos += len + 1;
        /* Empty pieces can never match a span; duplicates keep the first id. */
        if (len && tok_lookup(t, t->arena + t->off[i], len) < 0) {
            uint64_t h = span_hash(t->arena + t->off[i], len) & t->tok_mask;
            while (t->tok_table[h] >= 0) h = (h + 1) & t->tok_mask;
            t->tok_table[h] = (int32_t)i;
        }
        if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN)
            t->special[t->n_special++] = (int32_t)i;
    }
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);
    if (mode != MODE_SPM || v->n_merges > 0) {
        st = build_merges(t, v, err);
        if (st != ST_OK) goto fail;
    }
    if (mode != MODE_BPE) {
        st = build_pair_set(t, err, src);
        if (st != ST_OK) goto fail;
    }
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = tok_lookup(t, hex, 6);
        if (id < 0 && mode == MODE_SPM) {
            char c = (char)b;
            id = tok_lookup(t, &c, 1);
        }
        t->byte_tok[b] = id;
        t->b2u_len[b] = (uint8_t)unicode_encode_utf8(unicode_byte_to_cpt((uint8_t)b), t->b2u[b]);
    }
    t->bos = v->bos >= 0 && v->bos < n ? v->bos : -1;
    t->eos = v->eos >= 0 && v->eos < n ? v->eos : -1;
    t->unk = v->unk >= 0 && v->unk < n ? v->unk : -1;
    t->add_bos = v->add_bos && t->bos >= 0;
    t->add_space_prefix = v->add_space_prefix;
    if (t->add_space_prefix < TOK_PREFIX_NONE || t->add_space_prefix > TOK_PREFIX_META_FIRST ||
        (mode == MODE_BPE && t->add_space_prefix != TOK_PREFIX_NONE && t->add_space_prefix != TOK_PREFIX_META_ALWAYS)) {
        st = err_set(err, ST_ERR_ARG, "%s: add_space_prefix %d", src, v->add_space_prefix);
        goto fail;
    }
    t->ignore_merges = mode == MODE_BPE && v->ignore_merges;
    if (mode == MODE_SPM)
        snprintf(t->desc, sizeof t->desc, "spm (llama), %lld tokens", (long long)n);
    else if (mode == MODE_HF_SPM)
        snprintf(t->desc, sizeof t->desc, "spm (hf bpe, byte fallback), %lld tokens, %lld merges",
                 (long long)n, (long long)t->n_merges);
    else
        snprintf(t->desc, sizeof t->desc, "bpe (gpt2, pre %s), %lld tokens, %lld merges",
                 tok_pretok_name(t->pre), (long long)n, (long long)t->n_merges);
    *out = t;
    return ST_OK;
fail:
    tokenizer_free(t);
    return st;
}

/* === GGUF ============================================================= */

/* Reads an optional special-token id: the key's value when in range, else the default. */
static int32_t gguf_token_id(const Gguf *g, const char *key, int32_t def, int64_t n) {
    int64_t v;
    if (gguf_get_int(g, key, &v) && v >= 0 && v < n) return (int32_t)v;
    return def >= 0 && def < n ? def : -1;
}

static char *gguf_strdup(GgufStr s) { return core_strndup(s.s, (size_t)s.len); }

Status tokenizer_from_gguf(const Gguf *g, Tokenizer **out, Err *err) {
    *out = NULL;
    const char *path = g->mf.path ? g->mf.path : "gguf";
    GgufStr model_s, pre_s;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &model_s))
        return err_set(err, ST_ERR_FORMAT, "%s: no tokenizer.ggml.model (not a model with a vocabulary)", path);
    const GgufValue *toks = gguf_get_arr(g, "tokenizer.ggml.tokens");
    if (!toks || toks->v.arr.elem_type != GGUF_STRING)
        return err_set(err, ST_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or not a string array", path);
    int64_t n = (int64_t)toks->v.arr.n;
    int is_spm = gguf_str_eq(model_s, "llama"), is_bpe = gguf_str_eq(model_s, "gpt2");
    if (!is_spm && !is_bpe)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' (supported: llama, gpt2)", path,
                       (int)(model_s.len > 64 ? 64 : model_s.len), model_s.s);
    const GgufValue *scores = gguf_get_arr(g, "tokenizer.ggml.scores");
    if (scores && ((scores->v.arr.elem_type != GGUF_FLOAT32 && scores->v.arr.elem_type != GGUF_INT32) ||
                   (int64_t)scores->v.arr.n < n))
        return err_set(err, ST_ERR_FORMAT, "%s: tokenizer.ggml.scores: expected %lld float32 values", path, (long long)n);
    const GgufValue *types = gguf_get_arr(g, "tokenizer.ggml.token_type");
    if (types && (types->v.arr.elem_type != GGUF_INT32 || (int64_t)types->v.arr.n < n))
        return err_set(err, ST_ERR_FORMAT, "%s: tokenizer.ggml.token_type: expected %lld int32 values", path, (long long)n);
    const GgufValue *merges = gguf_get_arr(g, "tokenizer.ggml.merges");
    if (is_bpe && (!merges || merges->v.arr.elem_type != GGUF_STRING))
        return err_set(err, ST_ERR_FORMAT, "%s: tokenizer.ggml.merges missing or not a string array", path);
    TokVocab v = {0};
    Status st = ST_OK;
    TokPiece *pieces = malloc((size_t)(n > 0 ? n : 1) * sizeof *pieces);
    float *sc = scores ? malloc((size_t)(n > 0 ? n : 1) * sizeof *sc) : NULL;
    int32_t *ty = types ? malloc((size_t)(n > 0 ? n : 1) * sizeof *ty) : NULL;
    int64_t n_merges = is_bpe ? (int64_t)merges->v.arr.n : 0;
    TokPiece *mp = malloc((size_t)(n_merges > 0 ? n_merges : 1) * sizeof *mp);
    char *pre = NULL;
    if (!pieces || (scores && !sc) || (types && !ty) || !mp) {
        st = err_set(err, ST_ERR_NOMEM, "%s: %lld tokens", path, (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        pieces[i] = (TokPiece){toks->v.arr.strs[i].s, (size_t)toks->v.arr.strs[i].len};
        if (sc) sc[i] = (float)gguf_arr_double(scores, (uint64_t)i);
        if (ty) ty[i] = (int32_t)gguf_arr_int(types, (uint64_t)i);
    }
    for (int64_t i = 0; i < n_merges; i++)
        mp[i] = (TokPiece){merges->v.arr.strs[i].s, (size_t)merges->v.arr.strs[i].len};
    if (gguf_get_str(g, "tokenizer.ggml.pre", &pre_s)) {
        pre = gguf_strdup(pre_s);
        if (!pre) { st = err_set(err, ST_ERR_NOMEM, "%s: pre", path); goto done; }
    }
    v.model = is_spm ? "llama" : "gpt2";
    v.pre = pre;
    v.n_tokens = n;
    v.tokens = pieces;
    v.scores = sc;
    v.types = ty;
    v.n_merges = n_merges;
    v.merges = mp;
    v.source = path;
    /* llama.cpp's defaults per model, then the file's keys. */
    v.bos = gguf_token_id(g, "tokenizer.ggml.bos_token_id", is_spm ? 1 : 11, n);
    v.eos = gguf_token_id(g, "tokenizer.ggml.eos_token_id", is_spm ? 2 : 11, n);
    v.unk = gguf_token_id(g, "tokenizer.ggml.unknown_token_id", is_spm ? 0 : -1, n);
    const TokPreName *pn = is_bpe && pre ? tok_pretok_lookup(pre, strlen(pre)) : NULL;
    if (is_bpe && pre && !pn) {
        st = err_set(err, ST_ERR_UNSUPPORTED,
                     "%s: tokenizer.ggml.pre '%s' (known: default, gpt-2, llama-bpe, qwen2, deepseek-llm, "
                     "deepseek-coder, falcon, starcoder and their aliases)", path, pre);
        goto done;
    }
    v.add_bos = is_spm || (pn && pn->add_bos);
    v.ignore_merges = pn && pn->ignore_merges;
    if (pn && pn->no_bos) v.bos = gguf_token_id(g, "tokenizer.ggml.bos_token_id", -1, n);
    v.add_space_prefix = is_spm ? TOK_PREFIX_ALWAYS : TOK_PREFIX_NONE;
    int b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) v.add_bos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b))
        v.add_space_prefix = b && is_spm ? TOK_PREFIX_ALWAYS : TOK_PREFIX_NONE;
    st = tokenizer_from_vocab(&v, out, err);
done:
    free(pieces);
    free(sc);
    free(ty);
    free(mp);
    free(pre);
    return st;
}

/* === llama2.c ========================================================= */

static int32_t rd_i32(const unsigned char *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

Status tokenizer_from_llama2c(const char *path, int64_t vocab_size, Tokenizer **out, Err *err) {
    *out = NULL;
    if (vocab_size <= 0 || vocab_size > INT32_MAX)
        return err_set(err, ST_ERR_ARG, "%s: vocab size %lld from the model header", path, (long long)vocab_size);
    MappedFile mf = {0};
    Status st = mapfile_open(&mf, path, err);
    if (st != ST_OK) return st;
    const unsigned char *d = mf.data;
    size_t size = mf.size, pos = 4;
    TokPiece *pieces = calloc((size_t)vocab_size, sizeof *pieces);
    float *scores = calloc((size_t)vocab_size, sizeof *scores);
    int32_t *types = calloc((size_t)vocab_size, sizeof *types);
    char *text = NULL;
    if (!pieces || !scores || !types) { st = err_set(err, ST_ERR_NOMEM, "%s: %lld tokens", path, (long long)vocab_size); goto done; }
    if (size < 4) {
        st = err_set(err, ST_ERR_FORMAT, "%s: truncated: %zu bytes, expected a 4-byte max_token_length header", path, size);
        goto done;
    }
    int32_t max_len = rd_i32(d);
    if (max_len <= 0) { st = err_set(err, ST_ERR_FORMAT, "%s: offset 0: max_token_length %d", path, max_len); goto done; }
    /* Pieces are rewritten (' ' -> U+2581), so size the arena at 3x. */
    text = malloc(size * 3 + 16);
    if (!text) { st = err_set(err, ST_ERR_NOMEM, "%s", path); goto done; }
    size_t tp = 0;
    for (int64_t i = 0; i < vocab_size; i++) {
        if (size - pos < 8) {
            if (pos == size) /* whole tokens, just fewer than the checkpoint's header asks for */
                st = err_set(err, ST_ERR_MISMATCH,
                             "%s holds %lld tokens but the checkpoint's header says vocab_size %lld: a tokenizer "
                             "for another model, or a damaged checkpoint header",
                             path, (long long)i, (long long)vocab_size);
            else
                st = err_set(err, ST_ERR_FORMAT,
                             "%s: truncated at token %lld of %lld: offset %zu, need 8 bytes (score, length), file has %zu",
                             path, (long long)i, (long long)vocab_size, pos, size);
            goto done;
        }
        float sc;
        uint32_t bits = (uint32_t)rd_i32(d + pos);
        memcpy(&sc, &bits, sizeof sc);
        int32_t len = rd_i32(d + pos + 4);
        pos += 8;
        if (len < 0 || (size_t)len > size - pos) {
            st = err_set(err, ST_ERR_FORMAT, "%s: token %lld at offset %zu: length %d runs past the end of the file (%zu bytes left)",
                         path, (long long)i, pos - 4, len, size - pos);
            goto done;
        }
        const char *s = (const char *)d + pos;
        pos += (size_t)len;
        /* llama2.c stores BOS/EOS as "\n<s>\n" and "\n</s>\n". */
        if (len >= 2 && s[0] == '\n' && s[len - 1] == '\n' && s[1] == '<') { s++; len -= 2; }
        size_t start = tp;
        for (int32_t k = 0; k < len; k++) {
            if (s[k] == ' ') { memcpy(text + tp, SPACE_MARK, 3); tp += 3; }
            else text[tp++] = s[k];
        }
        pieces[i] = (TokPiece){text + start, tp - start};
        scores[i] = sc;
        if (parse_byte_piece(text + start, tp - start) >= 0) types[i] = TOK_TYPE_BYTE;
        else if (i == 0) types[i] = TOK_TYPE_UNKNOWN;
        else if (i == 1 || i == 2) types[i] = TOK_TYPE_CONTROL;
        else types[i] = TOK_TYPE_NORMAL;
    }
    TokVocab v = {.model = "llama", .n_tokens = vocab_size, .tokens = pieces, .scores = scores,
                  .types = types, .bos = 1, .eos = 2, .unk = 0, .add_bos = 1,
                  .add_space_prefix = TOK_PREFIX_ALWAYS, .source = path};
    st = tokenizer_from_vocab(&v, out, err);
done:
    free(pieces);
    free(scores);
    free(types);
    free(text);
    mapfile_close(&mf);
    return st;
}

/* === Hugging Face tokenizer.json ====================================== */

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int json_is_type(const cJSON *o, const char *type) {
    const char *s = json_str(o, "type");
    return s && strcmp(s, type) == 0;
}

/* HF components may be one object or a {"type": "Sequence", list_key: [...]}:
 * json_seq_count/json_seq_item walk either as a list (null counts as empty). */
static int json_seq_count(const cJSON *o, const char *list_key) {
    if (!o || cJSON_IsNull(o)) return 0;
    if (json_is_type(o, "Sequence")) return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, list_key));
    return 1;
}

static const cJSON *json_seq_item(const cJSON *o, const char *list_key, int i) {
    if (json_is_type(o, "Sequence")) return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, list_key), i);
    return o;
}

/* Reads tokenizer_config.json beside path, if any (NULL when absent or bad). */
static cJSON *read_config_beside(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *cfg = malloc(dir + 32);
    if (!cfg) return NULL;
    memcpy(cfg, path, dir);
    strcpy(cfg + dir, "tokenizer_config.json");
    char *buf = NULL;
    size_t len = 0;
    Err e;
    err_init(&e);
    cJSON *j = NULL;
    if (file_read_all(cfg, 64u << 20, &buf, &len, &e) == ST_OK && jsontext_check_nul(buf, len, cfg, &e) == ST_OK)
        j = cJSON_ParseWithLength(buf, len);
    free(buf);
    free(cfg);
    return j;
}

/* bos_token / eos_token in tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(x)) return x->valuestring;
    if (cJSON_IsObject(x)) return json_str(x, "content");
    return NULL;
}

typedef struct HfVocab {
    TokPiece *pieces;        /* (n) */
    int32_t *types;          /* (n) */
    int64_t n;
    TokPiece *merges;        /* (n_merges) */
    char **merge_bufs;       /* (n_merges) owned joins of [a, b] merges, or NULL */
    int64_t n_merges;
} HfVocab;

static void hf_vocab_done(HfVocab *h) {
    for (int64_t i = 0; h->merge_bufs && i < h->n_merges; i++) free(h->merge_bufs[i]);
    free(h->merge_bufs);
    free(h->pieces);
    free(h->types);
    free(h->merges);
}

static int32_t hf_find(const HfVocab *h, const char *s) {
    if (!s) return -1;
    size_t n = strlen(s);
    for (int64_t i = 0; i < h->n; i++)
        if (h->pieces[i].len == n && h->pieces[i].s && memcmp(h->pieces[i].s, s, n) == 0) return (int32_t)i;
    return -1;
}

static Status hf_read_vocab(const char *path, const cJSON *model, const cJSON *added, HfVocab *h, Err *err) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return err_set(err, ST_ERR_FORMAT, "%s: model.vocab missing or not an object", path);
    int64_t max_id = -1;
    const cJSON *x;
    cJSON_ArrayForEach(x, vocab) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble >= INT32_MAX || x->valuedouble != (double)(int64_t)x->valuedouble)
            return err_set(err, ST_ERR_FORMAT, "%s: model.vocab[\"%.40s\"]: id is not a non-negative integer", path, x->string);
        if ((int64_t)x->valuedouble > max_id) max_id = (int64_t)x->valuedouble;
    }
    int64_t n_entries = cJSON_GetArraySize(vocab);
    cJSON_ArrayForEach(x, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= INT32_MAX ||
            id->valuedouble != (double)(int64_t)id->valuedouble || !json_str(x, "content"))
            return err_set(err, ST_ERR_FORMAT, "%s: added_tokens: entry without a valid id and content", path);
        if ((int64_t)id->valuedouble > max_id) max_id = (int64_t)id->valuedouble;
        n_entries++;
    }
    if (max_id < 0) return err_set(err, ST_ERR_FORMAT, "%s: empty model.vocab", path);
    /* Ids index a dense table: refuse absurdly sparse ones instead of allocating for them. */
    if (max_id > 2 * n_entries + 1024)
        return err_set(err, ST_ERR_FORMAT, "%s: token id %lld with only %lld vocab entries", path,
                       (long long)max_id, (long long)n_entries);
    h->n = max_id + 1;
    h->pieces = calloc((size_t)h->n, sizeof *h->pieces);
    h->types = calloc((size_t)h->n, sizeof *h->types);
    if (!h->pieces || !h->types) return err_set(err, ST_ERR_NOMEM, "%s: %lld tokens", path, (long long)h->n);
    for (int64_t i = 0; i < h->n; i++) { h->pieces[i] = (TokPiece){"", 0}; h->types[i] = TOK_TYPE_UNUSED; }
    cJSON_ArrayForEach(x, vocab) {
        int64_t id = (int64_t)x->valuedouble;
        h->pieces[id] = (TokPiece){x->string, strlen(x->string)};
        h->types[id] = parse_byte_piece(x->string, strlen(x->string)) >= 0 ? TOK_TYPE_BYTE : TOK_TYPE_NORMAL;
    }
    cJSON_ArrayForEach(x, added) {
        int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(x, "id")->valuedouble;
        const char *c = json_str(x, "content");
        h->pieces[id] = (TokPiece){c, strlen(c)};
        h->types[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "special")) ? TOK_TYPE_CONTROL
                                                                                    : TOK_TYPE_USER_DEFINED;
    }
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges)) return err_set(err, ST_ERR_FORMAT, "%s: model.merges is not an array", path);
    h->n_merges = cJSON_GetArraySize(merges);
    h->merges = calloc((size_t)h->n_merges + 1, sizeof *h->merges);
    h->merge_bufs = calloc((size_t)h->n_merges + 1, sizeof *h->merge_bufs);
    if (!h->merges || !h->merge_bufs) return err_set(err, ST_ERR_NOMEM, "%s: merges", path);
    int64_t i = 0;
    cJSON_ArrayForEach(x, merges) {
        if (cJSON_IsString(x)) {
            h->merges[i] = (TokPiece){x->valuestring, strlen(x->valuestring)};
        } else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) == 2 && cJSON_IsString(cJSON_GetArrayItem(x, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(x, 1))) {
            const char *a = cJSON_GetArrayItem(x, 0)->valuestring, *b = cJSON_GetArrayItem(x, 1)->valuestring;
            size_t la = strlen(a), lb = strlen(b);
            char *buf = malloc(la + lb + 2);
            if (!buf) return err_set(err, ST_ERR_NOMEM, "%s: merges", path);
            memcpy(buf, a, la);
            buf[la] = ' ';
            memcpy(buf + la + 1, b, lb + 1);
            h->merge_bufs[i] = buf;
            h->merges[i] = (TokPiece){buf, la + lb + 1};
        } else {
            return err_set(err, ST_ERR_FORMAT, "%s: model.merges[%lld]: expected \"a b\" or [\"a\", \"b\"]", path, (long long)i);
        }
        i++;
    }
    return ST_OK;
}

/* The normalizer is HF's Llama layout: Replace(" " -> U+2581), optionally Prepend(U+2581). */
static int hf_spm_normalizer(const cJSON *norm, int *prepend) {
    int replace = 0;
    *prepend = 0;
    int n = json_seq_count(norm, "normalizers");
    for (int i = 0; i < n; i++) {
        const cJSON *x = json_seq_item(norm, "normalizers", i);
        if (json_is_type(x, "Prepend")) {
            const char *p = json_str(x, "prepend");
            if (p && strcmp(p, "\xE2\x96\x81") == 0) *prepend = 1;
        } else if (json_is_type(x, "Replace")) {
            const char *pat = json_str(cJSON_GetObjectItemCaseSensitive(x, "pattern"), "String");
            const char *c = json_str(x, "content");
            if (pat && c && strcmp(pat, " ") == 0 && strcmp(c, "\xE2\x96\x81") == 0) replace = 1;
        }
    }
    return replace;
}

/* HF Metaspace pre-tokenizer (replacement U+2581, split false): returns the
 * TOK_PREFIX_* its prepend_scheme means, -1 when there is no Metaspace, -2
 * (with *why) for a variant this tokenizer does not reproduce. */
static int hf_metaspace(const cJSON *pre, const char **why) {
    int n = json_seq_count(pre, "pretokenizers");
    for (int i = 0; i < n; i++) {
        const cJSON *x = json_seq_item(pre, "pretokenizers", i);
        if (!json_is_type(x, "Metaspace")) continue;
        const char *rep = json_str(x, "replacement");
        if (!rep || strcmp(rep, "\xE2\x96\x81") != 0) { *why = "with a replacement other than U+2581"; return -2; }
        if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(x, "split"))) { *why = "with split: true"; return -2; }
        const char *scheme = json_str(x, "prepend_scheme");
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(x, "add_prefix_space"); /* older files */
        if (!scheme) return cJSON_IsFalse(aps) ? TOK_PREFIX_NONE : TOK_PREFIX_META_ALWAYS;
        if (strcmp(scheme, "always") == 0) return TOK_PREFIX_META_ALWAYS;
        if (strcmp(scheme, "first") == 0) return TOK_PREFIX_META_FIRST;
        if (strcmp(scheme, "never") == 0) return TOK_PREFIX_NONE;
        *why = "with an unknown prepend_scheme";
        return -2;
    }
    return -1;
}

/* Picks the byte-level pre-tokenizer; returns 0 (and the pattern) if unknown.
 * *prefix: ByteLevel's add_prefix_space, supported only where it applies to the
 * whole section (ByteLevel doing the GPT-2 split itself). */
static int hf_byte_level_pre(const cJSON *pre, TokPre *out, int *prefix, const char **unknown) {
    int n = json_seq_count(pre, "pretokenizers"), byte_level = 0, use_regex = 0, n_split = 0;
    const char *splits[16];
    *unknown = NULL;
    *prefix = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *x = json_seq_item(pre, "pretokenizers", i);
        if (json_is_type(x, "ByteLevel")) {
            if (byte_level) { *unknown = "two ByteLevel pre-tokenizers"; return 0; }
            byte_level = 1;
            const cJSON *ur = cJSON_GetObjectItemCaseSensitive(x, "use_regex");
            int aps = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "add_prefix_space"));
            if (aps && i > 0) { *unknown = "ByteLevel add_prefix_space after another split"; return 0; }
            *prefix = aps;
            use_regex = !ur || cJSON_IsTrue(ur);
        } else if (json_is_type(x, "Split")) {
            const char *re = json_str(cJSON_GetObjectItemCaseSensitive(x, "pattern"), "Regex");
            if (!re) { *unknown = "a Split without a regex"; return 0; }
            if (n_split == 16) { *unknown = "more than 16 Splits"; return 0; }
            splits[n_split++] = re;
        } else {
            const char *ty = json_str(x, "type");
            *unknown = ty ? ty : "an untyped pre-tokenizer";
            return 0;
        }
    }
    if (!byte_level) return 0;
    if (n_split == 0 && use_regex) { *out = TOK_PRE_GPT2; return 1; }
    if (n_split > 0 && !use_regex && tok_pretok_from_regex_list(splits, n_split, out)) return 1;
    *unknown = n_split ? splits[0] : "ByteLevel without a split";
    return 0;
}

/* add_bos from the post-processor: TemplateProcessing whose single template starts with a special token. */
static const char *hf_template_bos(const cJSON *post) {
    int n = json_seq_count(post, "processors");
    for (int i = 0; i < n; i++) {
        const cJSON *x = json_seq_item(post, "processors", i);
        if (!json_is_type(x, "TemplateProcessing")) continue;
        const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(x, "single"), 0);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
        if (sp) return json_str(sp, "id");
    }
    return NULL;
}

Status tokenizer_from_hf(const char *tokenizer_json_path, Tokenizer **out, Err *err) {
    *out = NULL;
    const char *path = tokenizer_json_path;
    char *buf = NULL;
    size_t len = 0;
    cJSON *j = NULL, *cfg = NULL;
    HfVocab h = {0};
    Status st = file_read_all(path, 1u << 30, &buf, &len, err);
    if (st != ST_OK) return st;
    if ((st = jsontext_check_nul(buf, len, path, err)) != ST_OK) {
        free(buf);
        return st;
    }
    j = cJSON_ParseWithLength(buf, len);
    if (!j) {
        const char *e = cJSON_GetErrorPtr();
        size_t at = e && e >= buf && e <= buf + len ? (size_t)(e - buf) : 0;
        st = err_set(err, ST_ERR_FORMAT, "%s: not valid JSON (parse error near byte %zu)", path, at);
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (!cJSON_IsObject(model)) { st = err_set(err, ST_ERR_FORMAT, "%s: no \"model\" object", path); goto done; }
    const char *type = json_str(model, "type");
    if (type && strcmp(type, "BPE") != 0) {
        st = err_set(err, ST_ERR_UNSUPPORTED, "%s: model.type %s (only BPE is supported)", path, type);
        goto done;
    }
    st = hf_read_vocab(path, model, cJSON_GetObjectItemCaseSensitive(j, "added_tokens"), &h, err);
    if (st != ST_OK) goto done;
    TokVocab v = {.n_tokens = h.n, .tokens = h.pieces, .types = h.types, .n_merges = h.n_merges,
                  .merges = h.merges, .source = path};
    int prepend = 0;
    TokPre pre = TOK_PRE_GPT2;
    const char *unknown = NULL;
    int byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    int meta = byte_fallback ? hf_metaspace(cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), &unknown) : -1;
    if (meta == -2) {
        st = err_set(err, ST_ERR_UNSUPPORTED, "%s: Metaspace pre_tokenizer %s", path, unknown);
        goto done;
    }
    if (byte_fallback && (meta >= 0 || hf_spm_normalizer(cJSON_GetObjectItemCaseSensitive(j, "normalizer"), &prepend))) {
        v.model = "hf-spm";
        v.add_space_prefix = meta >= 0 ? meta : prepend ? TOK_PREFIX_ALWAYS : TOK_PREFIX_NONE;
        v.bos = hf_find(&h, "<s>");
        v.eos = hf_find(&h, "</s>");
    } else if (hf_byte_level_pre(cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), &pre, &prepend, &unknown)) {
        v.model = "gpt2";
        v.add_space_prefix = prepend ? TOK_PREFIX_META_ALWAYS : TOK_PREFIX_NONE;
        v.pre = tok_pretok_name(pre);
        v.ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
        v.bos = v.eos = -1;
    } else {
        st = unknown ? err_set(err, ST_ERR_UNSUPPORTED, "%s: pre_tokenizer not reproduced: %.200s", path, unknown)
                     : err_set(err, ST_ERR_UNSUPPORTED,
                               "%s: neither an SPM-style BPE (byte_fallback + U+2581 normalizer) nor a ByteLevel BPE", path);
        goto done;
    }
    v.unk = hf_find(&h, json_str(model, "unk_token"));
    const char *tmpl_bos = hf_template_bos(cJSON_GetObjectItemCaseSensitive(j, "post_processor"));
    cfg = read_config_beside(path);
    const char *cb = config_token(cfg, "bos_token"), *ce = config_token(cfg, "eos_token");
    if (hf_find(&h, cb) >= 0) v.bos = hf_find(&h, cb);
    else if (hf_find(&h, tmpl_bos) >= 0) v.bos = hf_find(&h, tmpl_bos);
    if (hf_find(&h, ce) >= 0) v.eos = hf_find(&h, ce);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    if (cJSON_IsBool(ab)) v.add_bos = cJSON_IsTrue(ab);
    else v.add_bos = tmpl_bos && hf_find(&h, tmpl_bos) >= 0;
    st = tokenizer_from_vocab(&v, out, err);
done:
    hf_vocab_done(&h);
    cJSON_Delete(j);
    cJSON_Delete(cfg);
    free(buf);
    return st;
}
