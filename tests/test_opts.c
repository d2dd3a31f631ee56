/* cli/opts: a command's option table gives the parse loop (both `--x v` and
 * `--x=v`, positionals, defaults kept), the errors that name the option and
 * the bad value (exit code 2), and the --help text in the 20-column layout;
 * and a real command's table (plan --auto) still prints every option. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "testlib.h"

/* stderr or stdout of a call, captured into buf through a temporary file */
typedef struct Capture {
    FILE *tmp;
    int saved, fd;
} Capture;

static void cap_begin(Capture *c, FILE *stream) {
    fflush(stream);
    c->fd = fileno(stream);
    c->tmp = tmpfile();
    CHECK(c->tmp != NULL);
    c->saved = dup(c->fd);
    CHECK(c->saved >= 0 && dup2(fileno(c->tmp), c->fd) >= 0);
}

static void cap_end(Capture *c, FILE *stream, char *buf, size_t cap) {
    fflush(stream);
    dup2(c->saved, c->fd);
    close(c->saved);
    rewind(c->tmp);
    size_t n = fread(buf, 1, cap - 1, c->tmp);
    buf[n] = '\0';
    fclose(c->tmp);
}

typedef struct Vals {
    const char *model, *text, *list;
    int64_t ctx, n_list;
    double alpha;
    int json, mode;
} Vals;

static const OptChoice MODES[] = {{"random", 0}, {"chunks", 1}, {NULL, 0}};

/* parses "-1" and "2" (and no other): an X_parse() of a library */
static int parse_level(const char *s) { return !strcmp(s, "1") ? 1 : !strcmp(s, "2") ? 2 : -1; }

static int take_list(const char *cmd, const Opt *o, const char *val) {
    Vals *v = o->user;
    if (!strchr(val, ',')) {
        fprintf(stderr, "qscope %s: %s: '%s' has no comma\n", cmd, o->name, val);
        return 0;
    }
    v->list = val;
    v->n_list++;
    return 1;
}

/* Runs the test command on a NULL-terminated argument list; *out gets what it
 * printed on stderr (or on stdout for --help). */
static int run(Vals *v, char *out, size_t cap, ...) {
    char *argv[16] = {"test"};
    int argc = 1;
    va_list ap;
    va_start(ap, cap);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;) argv[argc++] = a;
    va_end(ap);
    int level = 0;
    const Opt opts[] = {
        OPT_STR("--text", &v->text, "FILE", "text to score"),
        OPT_INT("--ctx", &v->ctx, 4, 1 << 20, "N", "chunk length\n(default 512)"),
        OPT_FLOAT("--alpha", &v->alpha, 1e-6, 1, "A", "an alpha"),
        OPT_FLAG("--json", &v->json, "one JSON object on stdout"),
        OPT_ENUM("--mode", &v->mode, MODES, "M", "random or chunks"),
        OPT_PARSE("--level", &level, parse_level, "1 or 2", "L", NULL),
        OPT_FN("--list", take_list, v, "A,B", "a list; may be repeated"),
        OPT_STR("--a-rather-long-option", &v->text, "VALUE", "goes on the next line"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "test", .usage = "usage: test MODEL [options]\n", .tables = {opts},
                          .pos = {&v->model}, .epilog = "the end\n"};
    int help = argc > 1 && !strcmp(argv[1], "--help");
    Capture c;
    cap_begin(&c, help ? stdout : stderr);
    int r = opts_parse(&spec, argc, argv);
    cap_end(&c, help ? stdout : stderr, out, cap);
    if (r == OPTS_OK && level) v->ctx += level * 1000; /* so the test sees the parsed level */
    return r;
}

static void vals_init(Vals *v) {
    memset(v, 0, sizeof *v);
    v->ctx = 512; /* a default the parse keeps when --ctx is absent */
    v->alpha = -1;
}

int main(void) {
    (void)testlib_shared; /* this test needs no shared files */
    char out[8192];
    Vals v;

    /* values land in their targets, both spellings; defaults stay */
    vals_init(&v);
    CHECK(run(&v, out, sizeof out, "m.gguf", "--text", "t.txt", "--alpha=0.25", "--json", "--mode", "CHUNKS",
              "--list", "a,b", "--list=c,d", NULL) == OPTS_OK);
    CHECK(!strcmp(v.model, "m.gguf") && !strcmp(v.text, "t.txt"));
    CHECK(v.ctx == 512 && v.alpha == 0.25 && v.json == 1 && v.mode == 1);
    CHECK(v.n_list == 2 && !strcmp(v.list, "c,d"));
    CHECK(out[0] == '\0');
    vals_init(&v);
    CHECK(run(&v, out, sizeof out, "--ctx=4", "--level", "2", NULL) == OPTS_OK);
    CHECK(v.ctx == 4 + 2000 && v.model == NULL);
    /* a value that looks like an option is still the value (as the hand-written loops took it) */
    vals_init(&v);
    CHECK(run(&v, out, sizeof out, "--text", "--json", NULL) == OPTS_OK);
    CHECK(!strcmp(v.text, "--json") && v.json == 0);

    /* errors name the command, the option and the bad value */
    struct {
        const char *a, *b, *msg;
    } bad[] = {
        {"--ctx", "3", "qscope test: --ctx: 3 is outside [4, 1048576]"},
        {"--ctx", "12x", "qscope test: --ctx: '12x' is not a whole number"},
        {"--alpha", "nan", "qscope test: --alpha: 'nan' is not a number"},
        {"--alpha", "2", "qscope test: --alpha: 2 is outside [1e-06, 1]"},
        {"--mode", "linear", "qscope test: --mode: 'linear' is not one of random, chunks"},
        {"--level", "3", "qscope test: --level: '3' is not 1 or 2"},
        {"--list", "ab", "qscope test: --list: 'ab' has no comma"},
        {"--frobnicate", NULL, "qscope test: unknown option '--frobnicate' (try qscope test --help)"},
        {"--json=1", NULL, "qscope test: unknown option '--json=1'"},
        {"m.gguf", "-", "qscope test: unexpected argument '-'"},
        {"m.gguf", "second", "qscope test: unexpected argument 'second'"},
        {"--ctx", NULL, "qscope test: option --ctx needs a value (N)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vals_init(&v);
        CHECK(run(&v, out, sizeof out, bad[i].a, bad[i].b, NULL) == OPTS_EXIT_ERR);
        CHECKF(strstr(out, bad[i].msg) != NULL, "%s %s: '%s' lacks '%s'", bad[i].a, bad[i].b ? bad[i].b : "", out,
               bad[i].msg);
    }

    /* --help: usage, one line per listed option in the 20-column layout, the
     * continuation lines indented, a long name on a line of its own, hidden
     * options (help NULL) left out, the epilog last; exit code 0 */
    vals_init(&v);
    CHECK(run(&v, out, sizeof out, "--help", NULL) == OPTS_EXIT_HELP);
    const char *want = "usage: test MODEL [options]\n"
                       "  --text FILE       text to score\n"
                       "  --ctx N           chunk length\n"
                       "                    (default 512)\n"
                       "  --alpha A         an alpha\n"
                       "  --json            one JSON object on stdout\n"
                       "  --mode M          random or chunks\n"
                       "  --list A,B        a list; may be repeated\n"
                       "  --a-rather-long-option VALUE\n"
                       "                    goes on the next line\n"
                       "the end\n";
    CHECKF(!strcmp(out, want), "help:\n%s", out);

    /* a real table: plan --auto --help lists every option it parses */
    char *argv[] = {"plan", "--auto", "--help", NULL};
    Capture c;
    cap_begin(&c, stdout);
    int r = cmd_plan_auto(3, argv);
    cap_end(&c, stdout, out, sizeof out);
    CHECK(r == 0);
    const char *names[] = {"--bpw B", "--bytes N", "--stats STATS", "--formats LIST", "--target T", "--method M",
                           "--groups LIST", "--text T", "--chunks C", "--ctx N", "--site-scales F", "--threads N",
                           "--cache DIR", "--why", "--tokenizer T", "-o PLAN.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECKF(strstr(out, names[i]) != NULL, "plan --auto --help lacks %s", names[i]);
    CHECK(strstr(out, "--auto ") == NULL || strstr(out, "usage: qscope plan MODEL --auto") != NULL);
    return testlib_done("test_opts");
}
