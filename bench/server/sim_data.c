/*
 * The data khien-sim sends, made to look like a Vietnamese provincial
 * government network so that the dashboard shows what it would show in
 * service: a province with its departments (Sở), districts and communes,
 * coded like the national agency codes ("000.00.07.H34"); office machines
 * named by their department ("pc-ketoan-03"), mostly Windows with some Linux
 * servers, on 10.x addresses; and detections with ClamAV's naming scheme
 * ("Win.Trojan.Agent-1234567-0"), where a few families (USB worms, macro
 * downloaders, cracked software) make up most of what is found, as they do
 * in practice.
 *
 * Everything is drawn from xoshiro256** seeded by the caller, so a seed
 * gives the same province and the same samples every time; only event ids
 * come from a generator seeded by the operating system, because the server
 * rightly ignores an event id it has seen before.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

/* ------------------------------------------------------------------------ */
/* Random numbers.                                                           */
/* ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

void sim_rng_seed_random(struct sim_rng *r)
{
    uint64_t seed = 0;
    if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    sim_rng_seed(r, seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sim_rng_next(struct sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sim_rng_below(struct sim_rng *r, uint64_t n)
{
    /* The modulo bias is below 2^-40 for every n used here. */
    return n == 0 ? 0 : sim_rng_next(r) % n;
}

double sim_rng_unit(struct sim_rng *r)
{
    return (double)(sim_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

void sim_uuid(struct sim_rng *r, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    uint64_t a = sim_rng_next(r), c = sim_rng_next(r);
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

int64_t sim_time(void)
{
    return (int64_t)time(NULL);
}

/* ------------------------------------------------------------------------ */
/* Agencies.                                                                 */
/* ------------------------------------------------------------------------ */

struct named_agency {
    const char *name;
    const char *kind;
};

/* The first agencies under the province, departments and districts mixed
 * so that even a small demo shows both. */
static const struct named_agency first_agencies[] = {
    {"Văn phòng UBND tỉnh", "department"},
    {"Sở Tài chính", "department"},
    {"Sở Y tế", "department"},
    {"Sở Giáo dục và Đào tạo", "department"},
    {"UBND thành phố An Hòa", "district"},
    {"Sở Nội vụ", "department"},
    {"Sở Thông tin và Truyền thông", "department"},
    {"UBND huyện Bình Minh", "district"},
    {"Sở Tài nguyên và Môi trường", "department"},
    {"Sở Kế hoạch và Đầu tư", "department"},
    {"UBND huyện Đông Thành", "district"},
    {"Sở Tư pháp", "department"},
    {"Sở Xây dựng", "department"},
    {"UBND huyện Tây Sơn", "district"},
    {"Sở Giao thông vận tải", "department"},
    {"Sở Công Thương", "department"},
    {"UBND thị xã Phú Lợi", "district"},
    {"Sở Nông nghiệp và Phát triển nông thôn", "department"},
    {"Sở Lao động - Thương binh và Xã hội", "department"},
    {"UBND huyện Nam Phong", "district"},
    {"Sở Văn hóa, Thể thao và Du lịch", "department"},
    {"Sở Khoa học và Công nghệ", "department"},
    {"UBND huyện Bắc Sơn", "district"},
    {"Thanh tra tỉnh", "department"},
    {"Ban Dân tộc", "department"},
    {"UBND huyện Thạch Long", "district"},
    {"Ban Quản lý các khu công nghiệp", "department"},
    {"Trung tâm Phục vụ hành chính công", "department"},
    {"UBND huyện Hòa Vang", "district"},
    {"Ban Quản lý dự án đầu tư xây dựng", "department"},
};

static const char *const commune_first[] = {
    "Tân", "An",  "Bình", "Phú",   "Hòa",  "Thạnh", "Vĩnh", "Long", "Đông",  "Tây",
    "Nam", "Bắc", "Hưng", "Thuận", "Minh", "Quang", "Hải",  "Sơn",  "Trung", "Phước",
};
static const char *const commune_second[] = {
    "Lập",   "Hòa",  "Phú",  "Lộc", "Thành", "Hưng",  "Lợi",  "Xuân", "Mỹ", "Thịnh",
    "Khánh", "Tiến", "Hiệp", "Đức", "Nghĩa", "Phong", "Thủy", "Bình", "An", "Vinh",
};

#define N_FIRST (sizeof(first_agencies) / sizeof(first_agencies[0]))

void sim_agency_describe(unsigned i, char *name, size_t namelen, char *code, size_t codelen,
                         const char **kind, unsigned *parent)
{
    if (i < 100)
        snprintf(code, codelen, "000.00.%02u.H34", i);
    else
        snprintf(code, codelen, "000.%02u.%02u.H34", (i / 100) % 100, i % 100);
    *parent = 0;
    if (i == 0) {
        snprintf(name, namelen, "UBND tỉnh (dữ liệu mô phỏng)");
        *kind = "province";
        return;
    }
    if (i <= N_FIRST) {
        snprintf(name, namelen, "%s", first_agencies[i - 1].name);
        *kind = first_agencies[i - 1].kind;
        return;
    }
    /* Communes, each under one of the districts. */
    unsigned c = i - (unsigned)N_FIRST - 1;
    size_t nf = sizeof(commune_first) / sizeof(commune_first[0]);
    size_t ns = sizeof(commune_second) / sizeof(commune_second[0]);
    const char *a = commune_first[c % nf], *b = commune_second[(c / nf) % ns];
    unsigned round = c / (unsigned)(nf * ns);
    if (round == 0)
        snprintf(name, namelen, "UBND %s %s %s", c % 7 == 3 ? "phường" : "xã", a, b);
    else
        snprintf(name, namelen, "UBND xã %s %s %u", a, b, round + 1);
    *kind = "agency";
    unsigned districts[N_FIRST], nd = 0;
    for (unsigned k = 0; k < N_FIRST; k++)
        if (strcmp(first_agencies[k].kind, "district") == 0)
            districts[nd++] = k + 1;
    *parent = districts[c % nd];
}

/* ------------------------------------------------------------------------ */
/* Machines.                                                                 */
/* ------------------------------------------------------------------------ */

struct os_profile {
    const char *os;
    const char *kernel;
    unsigned weight;
    int windows;
    int server;
};

static const struct os_profile os_profiles[] = {
    {"Windows 10 Pro 22H2", "10.0.19045", 46, 1, 0},
    {"Windows 11 Pro 23H2", "10.0.22631", 22, 1, 0},
    {"Windows 10 Pro 21H2", "10.0.19044", 8, 1, 0},
    {"Windows 7 Professional SP1", "6.1.7601", 5, 1, 0},
    {"Windows Server 2019 Standard", "10.0.17763", 3, 1, 1},
    {"Windows Server 2016 Standard", "10.0.14393", 2, 1, 1},
    {"Ubuntu 22.04.4 LTS", "5.15.0-105-generic", 7, 0, 0},
    {"Debian GNU/Linux 12 (bookworm)", "6.1.0-26-amd64", 4, 0, 1},
    {"CentOS Linux 7 (Core)", "3.10.0-1160.el7.x86_64", 2, 0, 1},
    {"Ubuntu 20.04.6 LTS", "5.4.0-182-generic", 1, 0, 1},
};
#define N_OS (sizeof(os_profiles) / sizeof(os_profiles[0]))

static const struct os_profile *profile_os(uint32_t profile)
{
    unsigned total = 0;
    for (size_t i = 0; i < N_OS; i++)
        total += os_profiles[i].weight;
    unsigned x = (profile & 0xffff) % total;
    for (size_t i = 0; i < N_OS; i++) {
        if (x < os_profiles[i].weight)
            return &os_profiles[i];
        x -= os_profiles[i].weight;
    }
    return &os_profiles[0];
}

int sim_profile_windows(uint32_t profile)
{
    return profile_os(profile)->windows;
}

/* Office roles, as they appear in Vietnamese hostnames: accounting, clerk's
 * office, administration, one-stop desk, leadership, planning, personnel,
 * inspection, legal, IT, citizen reception, statistics. */
static const char *const roles[] = {
    "ketoan",  "vanthu",   "hanhchinh", "motcua", "lanhdao", "kehoach", "nhansu",
    "tonghop", "thanhtra", "phaply",    "cntt",   "tiepdan", "thongke", "taivu",
};
static const char *const server_roles[] = {"file", "mail", "web", "db", "ad", "backup"};

void sim_hostname(uint32_t profile, unsigned n, char *out, size_t outlen)
{
    const struct os_profile *os = profile_os(profile);
    if (os->server)
        snprintf(out, outlen, "srv-%s-%02u",
                 server_roles[(profile >> 16) % (sizeof(server_roles) / sizeof(server_roles[0]))],
                 n + 1);
    else
        snprintf(out, outlen, "%s-%s-%02u", (profile >> 28) % 5 == 0 ? "lt" : "pc",
                 roles[(profile >> 16) % (sizeof(roles) / sizeof(roles[0]))], n + 1);
}

static const char *const cpus[] = {
    "Intel(R) Core(TM) i5-8500 CPU @ 3.00GHz",  "Intel(R) Core(TM) i3-10100 CPU @ 3.60GHz",
    "Intel(R) Core(TM) i5-10400 CPU @ 2.90GHz", "Intel(R) Core(TM) i7-12700 CPU",
    "Intel(R) Pentium(R) CPU G4560 @ 3.50GHz",  "AMD Ryzen 5 5600G with Radeon Graphics",
    "Intel(R) Core(TM) i5-1135G7 @ 2.40GHz",    "Intel(R) Xeon(R) Silver 4210R CPU @ 2.40GHz",
};
/* Dell, HP and Lenovo prefixes: what a government office buys. */
static const char *const ouis[] = {"f8:bc:12", "3c:52:82", "54:e1:ad", "d8:9e:f3", "98:e7:43"};

char *sim_inventory_json(const struct sim_agent *a, const struct sim_token *tok, size_t *len)
{
    const struct os_profile *os = profile_os(a->profile);
    uint32_t p = a->profile;
    char ip[32], mac[32];
    snprintf(ip, sizeof(ip), "10.%u.%u.%u", tok != NULL ? tok->ip_octet : 1u, 1 + (p >> 20) % 8,
             2 + (p >> 8) % 250);
    snprintf(mac, sizeof(mac), "%s:%02x:%02x:%02x", ouis[(p >> 24) % 5], (p >> 3) & 0xff,
             (p >> 11) & 0xff, (p >> 19) & 0xff);
    int64_t now = sim_time();
    unsigned ncpu = os->server ? 8 : (p >> 5) % 3 == 0 ? 2 : 4;
    long long mem = (long long)(os->server ? 32 : (p >> 7) % 4 == 0 ? 4 : 8) << 30;
    json_t *doc = json_pack(
        "{s:s,s:s,s:s,s:s,s:[s],s:[s],s:s,s:i,s:I,s:s,s:I,s:I,s:b,s:b,s:I,s:s}", "hostname",
        a->hostname, "os", os->os, "kernel", os->kernel, "arch", "x86_64", "ips", ip, "macs", mac,
        "cpu", os->server ? cpus[7] : cpus[(p >> 9) % 7], "cpus", (int)ncpu, "mem_bytes",
        (json_int_t)mem, "agent_version", "0.1.0", "db_version", (json_int_t)a->db_version,
        "db_time", (json_int_t)a->db_time, "rtp", (p >> 13) % 20 != 0, "firewall",
        (p >> 17) % 10 != 0, "last_full_scan", (json_int_t)(now - (int64_t)((p >> 4) % 7) * 86400),
        "machine_key", a->machine_key);
    if (doc == NULL)
        return NULL;
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text != NULL && len != NULL)
        *len = strlen(text);
    return text;
}

/* ------------------------------------------------------------------------ */
/* Detections.                                                               */
/* ------------------------------------------------------------------------ */

enum platform { ON_WINDOWS = 1, ON_LINUX = 2, ON_BOTH = 3 };

struct family {
    const char *name; /* the signature name without the ClamAV id */
    unsigned weight;
    unsigned variants;
    enum platform platform;
    const char *files[4];
};

static const struct family families[] = {
    {"Win.Worm.Autorun", 14, 10, ON_WINDOWS, {"autorun.inf", "New Folder.exe", "Tài liệu.exe"}},
    {"Win.Trojan.Agent",
     16,
     40,
     ON_WINDOWS,
     {"setup.exe", "update.exe", "Hóa đơn điện tử.exe", "svchost.exe"}},
    {"Doc.Downloader.Emotet",
     10,
     20,
     ON_WINDOWS,
     {"HoaDon_T10.doc", "Công văn khẩn.doc", "ThongBao.doc"}},
    {"PUA.Win.Tool.Keygen", 8, 10, ON_WINDOWS, {"keygen.exe", "Crack_Office_2019.exe"}},
    {"Eicar-Test-Signature", 6, 1, ON_BOTH, {"eicar.com", "eicar_test.txt"}},
    {"Win.Virus.Sality", 6, 8, ON_WINDOWS, {"winlogon.exe", "UniKey.exe", "setup.exe"}},
    {"Win.Trojan.AgentTesla", 6, 12, ON_WINDOWS, {"Don_dat_hang.exe", "PO_2024.exe"}},
    {"PUA.Win.Adware.Agent", 6, 10, ON_WINDOWS, {"CocCoc_setup_old.exe", "free_player.exe"}},
    {"Xls.Downloader.Agent", 5, 10, ON_WINDOWS, {"BaoCao_Quy3.xls", "Danh sách cán bộ.xls"}},
    {"Win.Virus.Ramnit", 5, 6, ON_WINDOWS, {"Setup.exe", "index.html"}},
    {"Win.Packed.Generic", 5, 20, ON_WINDOWS, {"tool.exe", "patch.exe"}},
    {"Doc.Exploit.CVE_2017_11882", 4, 6, ON_WINDOWS, {"QuyetDinh.doc", "Giấy mời họp.doc"}},
    {"Win.Trojan.Remcos", 4, 8, ON_WINDOWS, {"remcos.exe", "chrome_update.exe"}},
    {"Html.Phishing.Bank", 4, 8, ON_BOTH, {"dang-nhap.html", "xac-thuc-tai-khoan.htm"}},
    {"Js.Downloader.Agent", 4, 8, ON_WINDOWS, {"invoice.js", "thong_bao_thue.js"}},
    {"Win.Ransomware.WannaCry", 3, 5, ON_WINDOWS, {"tasksche.exe", "@WanaDecryptor@.exe"}},
    {"Win.Trojan.Qakbot", 3, 6, ON_WINDOWS, {"report.dll", "scan_0413.exe"}},
    {"Win.Trojan.PlugX", 3, 6, ON_WINDOWS, {"msvcr.dll", "Hội nghị.exe"}},
    {"Win.Virus.Virut", 3, 6, ON_WINDOWS, {"game.exe", "install.exe"}},
    {"Win.Trojan.Njrat", 3, 6, ON_WINDOWS, {"server.exe", "zalo_update.exe"}},
    {"Unix.Trojan.Mirai", 3, 8, ON_LINUX, {"kworker", "dvrHelper"}},
    {"Php.Webshell.Agent", 3, 8, ON_LINUX, {"shell.php", "upload.php"}},
    {"Unix.Trojan.Kaiji", 2, 4, ON_LINUX, {"linux_amd64", ".sshd"}},
    {"Unix.Coinminer.Xmrig", 2, 4, ON_LINUX, {"xmrig", "kdevtmpfsi"}},
};
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

struct sample {
    char signature[96];
    char sha256[65];
    char md5[33];
    uint32_t size;
    uint16_t family;
};

struct sim_samples {
    struct sample *v;
    size_t n;
    size_t first[N_FAMILIES]; /* index of each family's first variant */
};

struct sim_samples *sim_samples_new(uint64_t seed)
{
    struct sim_rng r;
    sim_rng_seed(&r, seed ^ 0x5a5a5a5aull);
    size_t total = 0;
    for (size_t f = 0; f < N_FAMILIES; f++)
        total += families[f].variants;
    struct sim_samples *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->v = calloc(total, sizeof(*s->v))) == NULL) {
        free(s);
        return NULL;
    }
    for (size_t f = 0; f < N_FAMILIES; f++) {
        s->first[f] = s->n;
        for (unsigned k = 0; k < families[f].variants; k++) {
            struct sample *x = &s->v[s->n++];
            x->family = (uint16_t)f;
            if (strcmp(families[f].name, "Eicar-Test-Signature") == 0) {
                snprintf(x->signature, sizeof(x->signature), "%s", families[f].name);
                snprintf(x->sha256, sizeof(x->sha256), "%s",
                         "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f");
                snprintf(x->md5, sizeof(x->md5), "%s", "44d88612fea8a8f36de82e1278abb02f");
                x->size = 68;
                continue;
            }
            /* ClamAV's ids: a seven-digit signature number and a revision. */
            snprintf(x->signature, sizeof(x->signature), "%s-%07u-%u", families[f].name,
                     (unsigned)(1000000 + sim_rng_below(&r, 9000000)),
                     (unsigned)(sim_rng_below(&r, 4) == 0 ? 1 : 0));
            uint8_t d[32], m[16];
            khx_sha256(x->signature, strlen(x->signature), d);
            khx_hex_encode(d, 32, x->sha256);
            khx_md5(d, sizeof(d), m);
            khx_hex_encode(m, 16, x->md5);
            x->size = (uint32_t)(4096 + sim_rng_below(&r, 3u << 20));
        }
    }
    return s;
}

void sim_samples_free(struct sim_samples *s)
{
    if (s == NULL)
        return;
    free(s->v);
    free(s);
}

size_t sim_samples_count(const struct sim_samples *s)
{
    return s->n;
}

size_t sim_samples_pick(const struct sim_samples *s, struct sim_rng *r, int windows)
{
    enum platform want = windows ? ON_WINDOWS : ON_LINUX;
    unsigned total = 0;
    for (size_t f = 0; f < N_FAMILIES; f++)
        if (families[f].platform & want)
            total += families[f].weight;
    unsigned x = (unsigned)sim_rng_below(r, total);
    for (size_t f = 0; f < N_FAMILIES; f++) {
        if (!(families[f].platform & want))
            continue;
        if (x < families[f].weight)
            return s->first[f] + sim_rng_below(r, families[f].variants);
        x -= families[f].weight;
    }
    return 0;
}

static const char *const users[] = {"ketoan",   "vanthu", "Admin",    "nguyenvana",
                                    "tranthib", "levanc", "phamthid", "User"};
static const char *const win_dirs[] = {
    "C:\\Users\\%s\\Downloads\\",
    "C:\\Users\\%s\\AppData\\Local\\Temp\\",
    "C:\\Users\\%s\\Desktop\\",
    "C:\\Users\\%s\\Documents\\Zalo Received Files\\",
    "E:\\",
    "C:\\Users\\%s\\AppData\\Roaming\\Microsoft\\Windows\\",
};
static const char *const linux_dirs[] = {"/home/%s/Downloads/", "/tmp/.cache/",
                                         "/var/www/html/uploads/", "/srv/samba/share/"};

/* Appends `s` as a JSON string: quotes, and backslashes escaped (the
 * generated text has no other character that needs it). */
static int append_json_string(struct khx_buf *b, const char *s)
{
    if (khx_buf_append_u8(b, '"') != 0)
        return -1;
    for (; *s != '\0'; s++) {
        if ((*s == '\\' || *s == '"') && khx_buf_append_u8(b, '\\') != 0)
            return -1;
        if (khx_buf_append_u8(b, (uint8_t)*s) != 0)
            return -1;
    }
    return khx_buf_append_u8(b, '"');
}

int sim_detection_json(const struct sim_samples *s, size_t k, struct sim_rng *r, int64_t at,
                       int windows, struct khx_buf *b)
{
    static const char *const actions[] = {"reported",    "quarantined", "quarantined",
                                          "quarantined", "reported",    "blocked"};
    const struct sample *x = &s->v[k < s->n ? k : 0];
    const struct family *f = &families[x->family];
    char id[37], dir[128], path[320];
    size_t nfiles = 0;
    while (nfiles < 4 && f->files[nfiles] != NULL)
        nfiles++;
    const char *file = f->files[sim_rng_below(r, nfiles)];
    const char *user = users[sim_rng_below(r, sizeof(users) / sizeof(users[0]))];
    if (windows)
        snprintf(dir, sizeof(dir),
                 win_dirs[sim_rng_below(r, sizeof(win_dirs) / sizeof(win_dirs[0]))], user);
    else
        snprintf(dir, sizeof(dir),
                 linux_dirs[sim_rng_below(r, sizeof(linux_dirs) / sizeof(linux_dirs[0]))], user);
    snprintf(path, sizeof(path), "%s%s", dir, file);
    sim_uuid(r, id);
    if (khx_buf_printf(b, "{\"id\":\"%s\",\"type\":\"detection\",\"at\":%lld,\"path\":", id,
                       (long long)at) != 0 ||
        append_json_string(b, path) != 0 ||
        khx_buf_printf(b,
                       ",\"sha256\":\"%s\",\"md5\":\"%s\",\"size\":%u,\"signature\":\"%s\","
                       "\"action\":\"%s\"}",
                       x->sha256, x->md5, x->size, x->signature,
                       actions[sim_rng_below(r, sizeof(actions) / sizeof(actions[0]))]) != 0)
        return -1;
    return 0;
}
