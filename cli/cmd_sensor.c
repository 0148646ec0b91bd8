/*
 * `khien sensor`: the network sensor that finds agency machines talking to
 * malware distribution and command-and-control infrastructure.
 *
 *   khien sensor run      inputs (pcap files, an interface, logs, syslog,
 *                         NetFlow) -> hits as JSON lines (and to the server)
 *   khien sensor compile  indicator lists -> a compiled store (.kis)
 *   khien sensor lookup   is this value listed, and by whom?
 *
 * The work is in sensor/ (run.c ties it together); this file reads the
 * command line and prints.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../sensor/run.h"
#include "../sensor/uplink.h"
#include "spool.h"

#define LISTS_MAX  8192 /* maltrail alone ships 3,114 trail files */
#define INPUTS_MAX 64

static volatile int stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void print_help(FILE *out)
{
    fputs(
        "Usage: khien sensor run [OPTIONS]\n"
        "       khien sensor compile --out STORE.kis [--list [FMT:]FILE]... [--allow "
        "[FMT:]FILE]...\n"
        "       khien sensor lookup [--list [FMT:]FILE]... [--allow [FMT:]FILE]... VALUE...\n"
        "       khien sensor enroll --server URL --token TOKEN [--ca FILE] --state DIR\n"
        "\n"
        "Finds the agency machines that talk to malware distribution and command-and-\n"
        "control servers: every DNS question and answer, TLS and QUIC server name, JA3\n"
        "and JA4 fingerprint, HTTP host and URL, and every address, in traffic and in the\n"
        "logs agencies already keep, is checked against indicator lists. Each transaction\n"
        "is checked on its own: two DNS queries on one connection are two checks.\n"
        "Tìm máy của cơ quan kết nối tới máy chủ phát tán mã độc và điều khiển (C&C).\n"
        "\n"
        "Inputs of 'run' (any number, together):\n"
        "  -r, --read FILE          A pcap or pcapng file ('-' = standard input).\n"
        "  -i, --interface IF       Capture live on IF with libpcap.\n"
        "      --afpacket           Capture with AF_PACKET TPACKET_V3 rings instead.\n"
        "      --fanout N           AF_PACKET capture threads, load-balanced by flow (default 1).\n"
        "  -f, --bpf EXPR           Capture filter for --read and --interface.\n"
        "  -l, --log [FMT:]FILE     A log file, read from the start and then followed\n"
        "                           (rotation handled). FMT: bind, dnsmasq, unbound,\n"
        "                           windns, netfilter, squid, zeek, eve (default: guessed\n"
        "                           per line).\n"
        "      --no-follow          Stop at the end of log files.\n"
        "      --syslog-udp ADDR:PORT, --syslog-tcp ADDR:PORT\n"
        "                           Receive log lines by syslog (RFC 3164/5424; TCP with\n"
        "                           newline or octet-counted framing).\n"
        "      --netflow ADDR:PORT  Collect NetFlow v5/v9 and IPFIX over UDP.\n"
        "\n"
        "Indicators (compiled into a memory-mapped store at start):\n"
        "  -L, --list [FMT:]FILE    An indicator list, or a compiled STORE.kis. FMT:\n"
        "                           plain, csv, maltrail, ipsum, firehol, iprep,\n"
        "                           zeek-intel, stix, misp (default: guessed). A folder\n"
        "                           is read as a MISP feed.\n"
        "  -A, --allow [FMT:]FILE   An allowlist (MISP warninglist, or a plain list):\n"
        "                           values it covers are never reported.\n"
        "      --allow-private      Keep indicators inside private and bogon ranges\n"
        "                           (dropped by default: lists such as firehol_level1\n"
        "                           name 10.0.0.0/8 and would flag every internal host).\n"
        "\n"
        "Output:\n"
        "  -o, --output FILE        Hits as JSON lines to FILE ('-' = standard output,\n"
        "                           the default).\n"
        "  -w, --window SECONDS     Report one hit per (host, indicator, place) per window,\n"
        "                           with a count (default 300; 0 = every match).\n"
        "  -n, --networks FILE      Address ranges per agency, lines 'CIDR AGENCY_ID [CODE]'\n"
        "                           (the server sends them when the sensor is enrolled).\n"
        "      --name NAME          This sensor's name in hits (default: the host name).\n"
        "  -s, --state DIR          Send hits to the Khiên server this sensor was enrolled\n"
        "                           with ('khien sensor enroll --state DIR'), through an\n"
        "                           on-disk spool (nothing is lost while the server is\n"
        "                           down), and take the province's indicator lists and\n"
        "                           agency address ranges from it.\n"
        "      --stats              Print counters as JSON on standard error at the end\n"
        "                           (and every minute for live inputs).\n"
        "  -h, --help               Show this help and exit.\n"
        "\n"
        "Exit status: 0 when the inputs ended or on SIGINT/SIGTERM, 1 ('run' with only\n"
        "files, and 'lookup') when something matched, 2 on an error.\n"
        "See docs/SENSOR.md.\n",
        out);
}

struct options {
    struct sen_list lists[LISTS_MAX], allow[LISTS_MAX];
    size_t nlists, nallow;
    struct sen_input inputs[INPUTS_MAX];
    size_t ninputs;
    int allow_private;
    const char *out_path;
    const char *networks;
    const char *name;
    const char *out_store;
    const char *bpf;
    char **values; /* the operands after the options (lookup's values) */
    int nvalues;
    const char *state;
    const char *server, *token, *ca;
    unsigned window;
    unsigned fanout;
    int afpacket;
    int no_follow;
    int stats;
};

/* "FMT:PATH" when FMT is a known name, else the whole text is the path. */
static int split_format(const char *arg, int is_log, int *fmt, const char **path)
{
    const char *colon = strchr(arg, ':');
    *path = arg;
    *fmt = 0; /* IOC_FMT_AUTO / SEN_LOG_AUTO */
    if (colon == NULL || colon == arg || colon - arg > 31)
        return 0;
    char name[32];
    memcpy(name, arg, (size_t)(colon - arg));
    name[colon - arg] = '\0';
    int f = is_log ? (int)sen_log_format_from_name(name) : (int)ioc_format_from_name(name);
    if (f == (is_log ? SEN_LOG_COUNT : IOC_FMT_COUNT))
        return 0;
    *fmt = f;
    *path = colon + 1;
    return 0;
}

static int add_list(struct sen_list *l, size_t *n, const char *arg)
{
    if (*n >= LISTS_MAX) {
        cli_errorf("at most %d lists", LISTS_MAX);
        return -1;
    }
    split_format(arg, 0, &l[*n].format, &l[*n].path);
    (*n)++;
    return 0;
}

static int add_input(struct options *o, int kind, const char *path, int log_format)
{
    if (o->ninputs >= INPUTS_MAX) {
        cli_errorf("at most %d inputs", INPUTS_MAX);
        return -1;
    }
    struct sen_input *in = &o->inputs[o->ninputs++];
    memset(in, 0, sizeof(*in));
    in->src.kind = kind;
    in->src.path = path;
    in->log_format = log_format;
    return 0;
}

enum {
    OPT_AFPACKET = 256,
    OPT_FANOUT,
    OPT_NO_FOLLOW,
    OPT_SYSLOG_UDP,
    OPT_SYSLOG_TCP,
    OPT_NETFLOW,
    OPT_ALLOW_PRIVATE,
    OPT_NAME,
    OPT_STATS,
    OPT_SERVER,
    OPT_TOKEN,
    OPT_CA,
};

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option opts[] = {
        {"read", required_argument, NULL, 'r'},
        {"interface", required_argument, NULL, 'i'},
        {"afpacket", no_argument, NULL, OPT_AFPACKET},
        {"fanout", required_argument, NULL, OPT_FANOUT},
        {"bpf", required_argument, NULL, 'f'},
        {"log", required_argument, NULL, 'l'},
        {"no-follow", no_argument, NULL, OPT_NO_FOLLOW},
        {"syslog-udp", required_argument, NULL, OPT_SYSLOG_UDP},
        {"syslog-tcp", required_argument, NULL, OPT_SYSLOG_TCP},
        {"netflow", required_argument, NULL, OPT_NETFLOW},
        {"list", required_argument, NULL, 'L'},
        {"allow", required_argument, NULL, 'A'},
        {"allow-private", no_argument, NULL, OPT_ALLOW_PRIVATE},
        {"output", required_argument, NULL, 'o'},
        {"out", required_argument, NULL, 'o'},
        {"window", required_argument, NULL, 'w'},
        {"networks", required_argument, NULL, 'n'},
        {"name", required_argument, NULL, OPT_NAME},
        {"stats", no_argument, NULL, OPT_STATS},
        {"state", required_argument, NULL, 's'},
        {"server", required_argument, NULL, OPT_SERVER},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"ca", required_argument, NULL, OPT_CA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->window = 300;
    int c, fmt;
    const char *path;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "r:i:f:l:L:A:o:w:n:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            if (add_input(o, SEN_SRC_PCAP_FILE, optarg, 0) != 0)
                return -1;
            break;
        case 'i':
            if (add_input(o, SEN_SRC_PCAP_LIVE, optarg, 0) != 0)
                return -1;
            break;
        case OPT_AFPACKET:
            o->afpacket = 1;
            break;
        case OPT_FANOUT:
            if (cli_parse_uint(optarg, 64, &v) != 0 || v == 0) {
                cli_errorf("--fanout: expected 1 to 64 threads, not '%s'", optarg);
                return -1;
            }
            o->fanout = (unsigned)v;
            break;
        case 'f':
            o->bpf = optarg;
            break;
        case 'l':
            split_format(optarg, 1, &fmt, &path);
            if (add_input(o, SEN_SRC_LOG_FILE, path, fmt) != 0)
                return -1;
            break;
        case OPT_NO_FOLLOW:
            o->no_follow = 1;
            break;
        case OPT_SYSLOG_UDP:
        case OPT_SYSLOG_TCP:
            if (add_input(o, c == OPT_SYSLOG_UDP ? SEN_SRC_SYSLOG_UDP : SEN_SRC_SYSLOG_TCP, optarg,
                          0) != 0)
                return -1;
            break;
        case OPT_NETFLOW:
            if (add_input(o, SEN_SRC_NETFLOW, optarg, 0) != 0)
                return -1;
            break;
        case 'L':
            if (add_list(o->lists, &o->nlists, optarg) != 0)
                return -1;
            break;
        case 'A':
            if (add_list(o->allow, &o->nallow, optarg) != 0)
                return -1;
            break;
        case OPT_ALLOW_PRIVATE:
            o->allow_private = 1;
            break;
        case 'o':
            o->out_path = optarg;
            o->out_store = optarg;
            break;
        case 'w':
            if (cli_parse_uint(optarg, 86400, &v) != 0) {
                cli_errorf("--window: expected 0 to 86400 seconds, not '%s'", optarg);
                return -1;
            }
            o->window = (unsigned)v;
            break;
        case 'n':
            o->networks = optarg;
            break;
        case OPT_NAME:
            o->name = optarg;
            break;
        case OPT_STATS:
            o->stats = 1;
            break;
        case 's':
            o->state = optarg;
            break;
        case OPT_SERVER:
            o->server = optarg;
            break;
        case OPT_TOKEN:
            o->token = optarg;
            break;
        case OPT_CA:
            o->ca = optarg;
            break;
        case 'h':
            print_help(stdout);
            return 1;
        default:
            return -1;
        }
    }
    o->values = argv + optind;
    o->nvalues = argc - optind;
    for (size_t i = 0; i < o->ninputs; i++) {
        struct sen_source_opts *s = &o->inputs[i].src;
        if (s->kind == SEN_SRC_PCAP_LIVE && o->afpacket) {
            s->kind = SEN_SRC_AFPACKET;
            s->fanout = o->fanout ? o->fanout : 1;
        }
        if (s->kind == SEN_SRC_PCAP_FILE || s->kind == SEN_SRC_PCAP_LIVE)
            s->bpf = o->bpf;
        s->promisc = 1;
        s->no_follow = o->no_follow;
    }
    return 0;
}

static int load_store(const struct options *o, struct ioc_store **store)
{
    char err[512] = "";
    struct sen_compile_opts co = {.lists = o->lists,
                                  .nlists = o->nlists,
                                  .allow = o->allow,
                                  .nallow = o->nallow,
                                  .allow_private = o->allow_private,
                                  .report = stderr};
    const char *tmp = getenv("TMPDIR");
    int r = sen_load_store(&co, tmp ? tmp : "/tmp", store, err, sizeof(err));
    if (r != KH_OK) {
        cli_errorf("%s", err[0] ? err : kh_strerror(r));
        return -1;
    }
    struct ioc_store_info info;
    ioc_store_info(*store, &info);
    size_t total = 0;
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        total += info.counts[k];
    fprintf(stderr,
            "%s: %zu indicators in use (%zu addresses, %zu prefixes, %zu address:port, "
            "%zu domains, %zu URLs, %zu JA3, %zu JA4), %zu allowlist entries\n",
            cli_progname, total, info.counts[IOC_IP], info.counts[IOC_CIDR],
            info.counts[IOC_IP_PORT], info.counts[IOC_DOMAIN], info.counts[IOC_URL],
            info.counts[IOC_JA3], info.counts[IOC_JA4], info.allow_entries);
    return 0;
}

static void print_stats(void *ctx, const char *json)
{
    (void)ctx;
    fprintf(stderr, "%s\n", json);
}

static int load_networks(const char *path, struct sen_agencies **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    char err[256] = "";
    if (khx_read_file(path, 16u << 20, &data, &len) != KH_OK) {
        cli_errorf("%s: cannot read", path);
        return -1;
    }
    int r = sen_agencies_from_text((const char *)data, len, out, err, sizeof(err));
    free(data);
    if (r != KH_OK) {
        cli_errorf("%s: %s", path, err);
        return -1;
    }
    return 0;
}

/* What the uplink's callbacks need: they run on the uplink's thread while
 * the inputs run on theirs. */
struct uplink_ctx {
    const struct options *o;
    struct ioc_slot *slot;
    struct sen_run *run;
};

static void on_server_indicators(void *ctx, const char *ioc_path, int64_t version)
{
    struct uplink_ctx *u = ctx;
    uint8_t *text = NULL;
    size_t len = 0;
    if (khx_read_file(ioc_path, 1u << 30, &text, &len) != KH_OK) {
        cli_errorf("indicator list %lld from the server: cannot read %s", (long long)version,
                   ioc_path);
        return;
    }
    struct sen_compile_opts co = {.lists = u->o->lists,
                                  .nlists = u->o->nlists,
                                  .allow = u->o->allow,
                                  .nallow = u->o->nallow,
                                  .extra_text = (const char *)text,
                                  .extra_len = len,
                                  .allow_private = u->o->allow_private};
    struct ioc_store *store = NULL;
    char err[512] = "";
    const char *tmp = getenv("TMPDIR");
    int r = sen_load_store(&co, tmp ? tmp : "/tmp", &store, err, sizeof(err));
    free(text);
    if (r != KH_OK) {
        cli_errorf("indicator list %lld from the server: %s", (long long)version, err);
        return;
    }
    ioc_slot_swap(u->slot, store);
    fprintf(stderr, "%s: indicator list %lld from the server in use\n", cli_progname,
            (long long)version);
}

static void on_server_networks(void *ctx, json_t *networks)
{
    struct uplink_ctx *u = ctx;
    struct sen_agencies *a = NULL;
    char err[256] = "";
    if (sen_agencies_from_json(networks, &a, err, sizeof(err)) != KH_OK) {
        cli_errorf("agency address ranges from the server: %s", err);
        return;
    }
    sen_detect_set_agencies(sen_run_shared(u->run), a);
}

static int sensor_run(struct options *o)
{
    struct spool *spool = NULL;
    struct sen_uplink *uplink = NULL;
    struct uplink_ctx uctx;
    struct ioc_slot *slot = NULL;
    struct ioc_store *store = NULL;
    struct sen_output *out = NULL;
    struct sen_run *run = NULL;
    struct sen_agencies *agencies = NULL;
    FILE *jsonl = NULL;
    int rc = CLI_EXIT_ERROR;
    if (o->ninputs == 0) {
        cli_errorf("no input: give --read, --interface, --log, --syslog-udp, --syslog-tcp or "
                   "--netflow (see --help)");
        goto out;
    }
    if (o->nlists == 0)
        cli_errorf("warning: no indicator list (--list): nothing can match");
    if (o->networks != NULL && load_networks(o->networks, &agencies) != 0)
        goto out;
    if (o->out_path == NULL || strcmp(o->out_path, "-") == 0) {
        jsonl = stdout;
    } else if ((jsonl = fopen(o->out_path, "a")) == NULL) {
        cli_errorf("%s: cannot open for writing", o->out_path);
        goto out;
    }
    if (ioc_slot_new(&slot) != KH_OK)
        goto out;
    if (o->nlists > 0) {
        if (load_store(o, &store) != 0)
            goto out;
        ioc_slot_swap(slot, store);
        store = NULL;
    }
    char host[256] = "sensor";
    gethostname(host, sizeof(host) - 1);
    struct sen_output_opts oo = {
        .window_s = o->window, .jsonl = jsonl, .sensor = o->name ? o->name : host};
    if (sen_output_new(&oo, &out) != KH_OK)
        goto out;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct sen_run_opts ro = {.inputs = o->inputs,
                              .ninputs = o->ninputs,
                              .slot = slot,
                              .out = out,
                              .agencies = agencies,
                              .stop = &stop_requested,
                              .stats_report = o->stats ? print_stats : NULL};
    char err[512] = "";
    agencies = NULL; /* sen_run_start owns them from here, even when it fails */
    int r = sen_run_start(&ro, &run, err, sizeof(err));
    if (r != KH_OK) {
        cli_errorf("%s", err[0] ? err : kh_strerror(r));
        goto out;
    }
    if (o->state != NULL) {
        uctx = (struct uplink_ctx){.o = o, .slot = slot, .run = run};
        struct sen_uplink_opts uo = {.state_dir = o->state,
                                     .spool = spool,
                                     .ctx = &uctx,
                                     .on_indicators = on_server_indicators,
                                     .on_networks = on_server_networks};
        if ((r = sen_uplink_start(&uo, &uplink, err, sizeof(err))) != KH_OK) {
            cli_errorf("%s: %s", o->state, err[0] ? err : kh_strerror(r));
            stop_requested = 1;
        }
    }
    r = sen_run_wait(run);
    struct sen_output_stats os;
    sen_output_stats(out, &os);
    if (r != KH_OK) {
        cli_errorf("an input failed: %s", kh_strerror(r));
        goto out;
    }
    int files_only = 1;
    for (size_t i = 0; i < o->ninputs; i++)
        files_only &= o->inputs[i].src.kind == SEN_SRC_PCAP_FILE || o->no_follow;
    rc = files_only && os.matches > 0 ? CLI_EXIT_FOUND : CLI_EXIT_OK;
out:
    /* The uplink goes first (its callbacks use the run), and sends what the
     * output flushes into the spool on its next start if not now. */
    sen_uplink_free(uplink);
    sen_run_free(run);
    sen_output_free(out);
    spool_close(spool);
    if (jsonl != NULL && jsonl != stdout)
        fclose(jsonl);
    else if (jsonl == stdout)
        fflush(stdout);
    ioc_store_close(store);
    ioc_slot_free(slot);
    sen_agencies_free(agencies);
    return rc;
}

static int sensor_compile(struct options *o)
{
    int rc = CLI_EXIT_ERROR;
    if (o->out_store == NULL || o->nlists + o->nallow == 0) {
        cli_errorf("usage: khien sensor compile --out STORE.kis --list [FMT:]FILE...");
        goto out;
    }
    struct sen_compile_opts co = {.lists = o->lists,
                                  .nlists = o->nlists,
                                  .allow = o->allow,
                                  .nallow = o->nallow,
                                  .allow_private = o->allow_private,
                                  .report = stderr};
    struct ioc_build_stats st;
    char err[512] = "";
    uint64_t t0 = khx_now_ms();
    int r = sen_compile(&co, o->out_store, &st, err, sizeof(err));
    if (r != KH_OK) {
        cli_errorf("%s", err[0] ? err : kh_strerror(r));
        goto out;
    }
    printf("%s: %zu indicators (%zu merged from several sources, %zu dropped by allowlists "
           "and private ranges), %zu allowlist entries, %llu bytes, %.2f s\n",
           o->out_store, st.indicators, st.merged, st.allowlisted, st.allow_entries,
           (unsigned long long)st.file_bytes, (double)(khx_now_ms() - t0) / 1000.0);
    rc = CLI_EXIT_OK;
out:
    return rc;
}

static void print_hit_json(const char *value, int kind_result, const struct ioc_hit *h)
{
    json_t *j = json_object();
    json_object_set_new(j, "value", json_string(value));
    json_object_set_new(j, "result",
                        json_string(kind_result == IOC_MATCH     ? "listed"
                                    : kind_result == IOC_ALLOWED ? "allowlisted"
                                                                 : "not listed"));
    if (kind_result == IOC_MATCH) {
        static const char *const kinds[IOC_KIND_COUNT] = {"ip",  "cidr", "ip_port", "domain",
                                                          "url", "ja3",  "ja4"};
        json_object_set_new(j, "indicator", json_string(h->value));
        json_object_set_new(j, "kind", json_string(kinds[h->kind]));
        json_t *srcs = json_array();
        for (size_t i = 0; i < h->nsources; i++) {
            const struct ioc_source_ref *s = &h->sources[i];
            json_t *e = json_pack("{s:s,s:s,s:i}", "source", s->source, "category", s->category,
                                  "confidence", (int)s->confidence);
            if (s->family[0])
                json_object_set_new(e, "family", json_string(s->family));
            json_array_append_new(srcs, e);
        }
        json_object_set_new(j, "sources", srcs);
    }
    char *s = json_dumps(j, JSON_COMPACT);
    puts(s ? s : "{}");
    free(s);
    json_decref(j);
}

static int sensor_lookup(struct options *o)
{
    struct ioc_store *store = NULL;
    struct ioc_hit *h = calloc(1, sizeof(*h));
    int rc = CLI_EXIT_ERROR;
    if (h == NULL)
        goto out;
    if (o->nvalues == 0 || o->nlists == 0) {
        cli_errorf("usage: khien sensor lookup --list [FMT:]FILE... VALUE...");
        goto out;
    }
    if (load_store(o, &store) != 0)
        goto out;
    int64_t now = (int64_t)time(NULL);
    rc = CLI_EXIT_OK;
    for (int i = 0; i < o->nvalues; i++) {
        const char *v = o->values[i];
        size_t len = strlen(v);
        char norm[IOC_VALUE_MAX + 1], nerr[128];
        int kind = ioc_normalize_value(-1, v, len, norm, nerr, sizeof(nerr));
        int m = IOC_MISS;
        uint8_t a[16];
        if (kind == IOC_IP && inet_pton(AF_INET, norm, a) == 1)
            m = ioc_store_match_addr(store, AF_INET, a, 0, now, h);
        else if (kind == IOC_IP && inet_pton(AF_INET6, norm, a) == 1)
            m = ioc_store_match_addr(store, AF_INET6, a, 0, now, h);
        else if (kind == IOC_IP_PORT) {
            char host[IOC_VALUE_MAX + 1];
            const char *colon = strrchr(norm, ':');
            size_t hl = (size_t)(colon - norm);
            memcpy(host, norm[0] == '[' ? norm + 1 : norm, hl);
            host[norm[0] == '[' ? hl - 2 : hl] = '\0';
            int fam = strchr(host, ':') ? AF_INET6 : AF_INET;
            if (inet_pton(fam, host, a) == 1)
                m = ioc_store_match_addr(store, fam, a, (uint16_t)atoi(colon + 1), now, h);
        } else if (kind == IOC_DOMAIN)
            m = ioc_store_match_domain(store, norm, strlen(norm), now, h);
        else if (kind == IOC_URL)
            m = ioc_store_match_url(store, norm, strlen(norm), now, h);
        else if (kind == IOC_JA3 || kind == IOC_JA4)
            m = ioc_store_match_fingerprint(store, kind, norm, strlen(norm), now, h);
        else {
            cli_errorf("%s: %s", v, nerr);
            rc = CLI_EXIT_ERROR;
            continue;
        }
        print_hit_json(v, m, h);
        if (m == IOC_MATCH && rc == CLI_EXIT_OK)
            rc = CLI_EXIT_FOUND;
    }
out:
    ioc_store_close(store);
    free(h);
    return rc;
}

static int sensor_enroll(struct options *o)
{
    int rc = CLI_EXIT_ERROR;
    if (o->server == NULL || o->token == NULL || o->state == NULL) {
        cli_errorf("usage: khien sensor enroll --server URL --token TOKEN [--ca FILE] --state DIR");
        goto out;
    }
    char err[512] = "";
    int r = sen_uplink_enroll(o->state, o->server, o->token, o->ca, err, sizeof(err));
    if (r != KH_OK) {
        cli_errorf("%s", err[0] ? err : kh_strerror(r));
        goto out;
    }
    printf("enrolled: state in %s; start with 'khien sensor run --state %s ...'\n", o->state,
           o->state);
    rc = CLI_EXIT_OK;
out:
    return rc;
}

int cmd_sensor(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
    }
    const char *sub = argv[1];
    static char display[64];
    snprintf(display, sizeof(display), "khien sensor %s", sub);
    cli_progname = display;
    argv[1] = display;
    static const struct {
        const char *name;
        int (*run)(struct options *o);
    } subs[] = {{"run", sensor_run},
                {"compile", sensor_compile},
                {"lookup", sensor_lookup},
                {"enroll", sensor_enroll}};
    for (size_t i = 0; i < KHX_ARRAY_LEN(subs); i++) {
        if (strcmp(sub, subs[i].name) != 0)
            continue;
        /* Every subcommand reads the same options; each checks those it needs. */
        struct options *o = calloc(1, sizeof(*o));
        if (o == NULL)
            return CLI_EXIT_ERROR;
        int p = parse_options(argc - 1, argv + 1, o);
        int rc = p > 0 ? CLI_EXIT_OK : p < 0 ? CLI_EXIT_ERROR : subs[i].run(o);
        free(o);
        return rc;
    }
    cli_errorf("unknown subcommand '%s': run, compile, lookup or enroll (see --help)", sub);
    return CLI_EXIT_ERROR;
}
