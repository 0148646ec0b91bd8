/*
 * AF_PACKET capture (source_afpacket.c): a live interface read through
 * TPACKET_V3 rings without libpcap, for rates one libpcap thread cannot
 * keep up with. Each of `fanout` threads has its own socket and its own
 * memory-mapped receive ring; the sockets join one PACKET_FANOUT group in
 * hash mode, so the kernel sends both directions of a flow to the same
 * thread (a consumer keeps per-thread decoders without locks). IP fragments
 * are reassembled for the hash (PACKET_FANOUT_FLAG_DEFRAG) so that every
 * fragment of a datagram lands on one thread.
 *
 * Ring: blocks of 1 MiB, ring_mb of them per thread (64 by default), and a
 * block timeout of 100 ms so a quiet link still hands its packets over
 * promptly. A thread polls with a 1 s timeout and calls tick() when it
 * wakes, so timers run on an idle link. Drops come from PACKET_STATISTICS
 * (the counters reset on each read and are added up). The kernel strips a
 * VLAN tag into the ring's header; it is put back into the frame so the
 * decoders see the frame as it was on the wire.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "khx.h"
#include "source_int.h"

#define BLOCK_SIZE     (1u << 20)
#define FRAME_SIZE     2048u
#define BLOCK_TOV_MS   100
#define POLL_MS        1000
#define VLAN_FRAME_MAX (65535u + 4u)

struct afp_ring {
    int fd;
    uint8_t *map;
    size_t map_len;
    unsigned nblocks;
    unsigned next;     /* the block to read next */
    uint8_t *vlan_buf; /* a frame with its VLAN tag put back */
};

struct afp_state {
    struct afp_ring *rings;
    unsigned nrings;
    struct bpf_program prog; /* the filter, run in user space on the frame as on the wire */
    int has_prog;
};

static atomic_uint fanout_seq;

static void *afp_thread(void *arg);

static void afp_close_ring(struct afp_ring *r)
{
    if (r->map != NULL && r->map != MAP_FAILED)
        munmap(r->map, r->map_len);
    if (r->fd >= 0)
        close(r->fd);
    free(r->vlan_buf);
    r->map = NULL;
    r->fd = -1;
    r->vlan_buf = NULL;
}

static void afp_close(struct sen_source *src)
{
    struct afp_state *s = src->kind_state;
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->nrings; i++)
        afp_close_ring(&s->rings[i]);
    if (s->has_prog)
        pcap_freecode(&s->prog);
    free(s->rings);
    free(s);
    src->kind_state = NULL;
}

static int afp_open_ring(struct sen_source *src, struct afp_ring *r, int ifindex, int fanout_arg,
                         char *err, size_t errlen)
{
    const struct sen_source_opts *o = &src->opts;
    int v = TPACKET_V3;
    size_t mb = o->ring_mb ? o->ring_mb : 64;
    if (mb > 4096)
        mb = 4096;
    /* Protocol 0: the socket receives nothing until bind() names the
     * interface and ETH_P_ALL, so no other interface's packet reaches the
     * ring in between. */
    r->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (r->fd < 0) {
        khx_errf(err, errlen, "%s: AF_PACKET socket: %s%s", o->path, strerror(errno),
                 errno == EPERM ? " (capture needs CAP_NET_RAW)" : "");
        return KH_EIO;
    }
    if (setsockopt(r->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) != 0) {
        khx_errf(err, errlen, "%s: TPACKET_V3: %s", o->path, strerror(errno));
        return KH_EIO;
    }
    struct tpacket_req3 req;
    memset(&req, 0, sizeof(req));
    req.tp_block_size = BLOCK_SIZE;
    req.tp_block_nr = (unsigned)mb;
    req.tp_frame_size = FRAME_SIZE;
    req.tp_frame_nr = (BLOCK_SIZE / FRAME_SIZE) * (unsigned)mb;
    req.tp_retire_blk_tov = BLOCK_TOV_MS;
    req.tp_feature_req_word = TP_FT_REQ_FILL_RXHASH;
    if (setsockopt(r->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0) {
        khx_errf(err, errlen, "%s: PACKET_RX_RING of %zu MiB: %s", o->path, mb, strerror(errno));
        return KH_EIO;
    }
    r->nblocks = req.tp_block_nr;
    r->map_len = (size_t)req.tp_block_size * req.tp_block_nr;
    r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, r->fd, 0);
    if (r->map == MAP_FAILED) /* MAP_LOCKED may be over RLIMIT_MEMLOCK: try without */
        r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    if (r->map == MAP_FAILED) {
        r->map = NULL;
        khx_errf(err, errlen, "%s: ring mmap: %s", o->path, strerror(errno));
        return KH_EIO;
    }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    if (bind(r->fd, (struct sockaddr *)&sll, sizeof(sll)) != 0) {
        khx_errf(err, errlen, "%s: bind: %s", o->path, strerror(errno));
        return KH_EIO;
    }
    if (o->promisc) {
        struct packet_mreq mr;
        memset(&mr, 0, sizeof(mr));
        mr.mr_ifindex = ifindex;
        mr.mr_type = PACKET_MR_PROMISC;
        if (setsockopt(r->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) != 0) {
            khx_errf(err, errlen, "%s: promiscuous mode: %s", o->path, strerror(errno));
            return KH_EIO;
        }
    }
    if (fanout_arg != 0 &&
        setsockopt(r->fd, SOL_PACKET, PACKET_FANOUT, &fanout_arg, sizeof(fanout_arg)) != 0) {
        khx_errf(err, errlen, "%s: PACKET_FANOUT: %s", o->path, strerror(errno));
        return KH_EIO;
    }
    if ((r->vlan_buf = malloc(VLAN_FRAME_MAX)) == NULL)
        return KH_ENOMEM;
    return KH_OK;
}

int sen_src_afpacket_open(struct sen_source *src, char *err, size_t errlen)
{
    struct afp_state *s = NULL;
    int r = KH_ENOMEM;
    unsigned n = src->opts.fanout ? src->opts.fanout : 1;
    unsigned ifindex = if_nametoindex(src->path);
    if (ifindex == 0) {
        khx_errf(err, errlen, "%s: no such device", src->path);
        return KH_EINVAL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL || (s->rings = calloc(n, sizeof(*s->rings))) == NULL)
        goto out;
    for (unsigned i = 0; i < n; i++)
        s->rings[i].fd = -1;
    s->nrings = n;
    if ((r = sen_src_compile_filter(DLT_EN10MB, src->opts.snaplen, src->path, src->bpf, &s->prog,
                                    &s->has_prog, err, errlen)) != KH_OK)
        goto out;
    /* A fanout group id unique in this host for this source. */
    unsigned gid = ((unsigned)getpid() * 31u + atomic_fetch_add(&fanout_seq, 1)) & 0xffffu;
    int fanout_arg =
        n > 1 ? (int)(gid | ((unsigned)(PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16)) : 0;
    for (unsigned i = 0; i < n; i++)
        if ((r = afp_open_ring(src, &s->rings[i], (int)ifindex, fanout_arg, err, errlen)) != KH_OK)
            goto out;
    src->kind_state = s;
    src->kind_close = afp_close;
    src->kind_run = afp_thread;
    s = NULL;
    src->nworkers = n;
    r = KH_OK;
out:
    if (s != NULL) {
        for (unsigned i = 0; s->rings != NULL && i < s->nrings; i++)
            afp_close_ring(&s->rings[i]);
        if (s->has_prog)
            pcap_freecode(&s->prog);
        free(s->rings);
        free(s);
    }
    return r;
}

static void afp_drops(struct sen_source *src, struct afp_ring *r)
{
    struct tpacket_stats_v3 st;
    socklen_t sl = sizeof(st);
    if (getsockopt(r->fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0 && st.tp_drops > 0)
        atomic_fetch_add(&src->kernel_drops, st.tp_drops);
}

/* Hands one block's packets to the frame callback. */
static void afp_block(struct sen_source *src, const struct afp_state *s, unsigned worker,
                      struct afp_ring *r, struct tpacket_block_desc *bd)
{
    unsigned snap = src->opts.snaplen ? src->opts.snaplen : 65535;
    uint32_t n = bd->hdr.bh1.num_pkts;
    uint32_t off = bd->hdr.bh1.offset_to_first_pkt;
    uint64_t frames = 0, bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        /* The kernel wrote the ring, but a bad offset must not take us
         * outside the block. */
        if (off < sizeof(*bd) || off + sizeof(struct tpacket3_hdr) > BLOCK_SIZE)
            break;
        struct tpacket3_hdr *h = (struct tpacket3_hdr *)((uint8_t *)bd + off);
        if ((size_t)off + h->tp_mac + h->tp_snaplen > BLOCK_SIZE)
            break;
        const uint8_t *pkt = (const uint8_t *)h + h->tp_mac;
        size_t caplen = h->tp_snaplen;
        int64_t ts = (int64_t)h->tp_sec * 1000000 + h->tp_nsec / 1000;
        uint32_t wire_len = h->tp_len;
        if ((h->tp_status & TP_STATUS_VLAN_VALID) && caplen >= 12) {
            /* Frames merged by GRO can be longer than 64 KiB: the copy
             * with the tag keeps what fits, as a snap length would. */
            if (caplen > VLAN_FRAME_MAX - 4)
                caplen = VLAN_FRAME_MAX - 4;
            uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) && h->hv1.tp_vlan_tpid
                                ? h->hv1.tp_vlan_tpid
                                : 0x8100;
            uint16_t tci = (uint16_t)h->hv1.tp_vlan_tci;
            memcpy(r->vlan_buf, pkt, 12);
            r->vlan_buf[12] = (uint8_t)(tpid >> 8);
            r->vlan_buf[13] = (uint8_t)tpid;
            r->vlan_buf[14] = (uint8_t)(tci >> 8);
            r->vlan_buf[15] = (uint8_t)tci;
            memcpy(r->vlan_buf + 16, pkt + 12, caplen - 12);
            pkt = r->vlan_buf;
            caplen += 4;
            wire_len += 4;
        }
        if (caplen > snap)
            caplen = snap;
        if (s->has_prog) {
            struct pcap_pkthdr ph;
            memset(&ph, 0, sizeof(ph));
            ph.caplen = (bpf_u_int32)caplen;
            ph.len = wire_len;
            if (pcap_offline_filter(&s->prog, &ph, pkt) == 0) {
                if (h->tp_next_offset == 0)
                    break;
                off += h->tp_next_offset;
                continue;
            }
        }
        frames++;
        bytes += wire_len;
        if (src->cb.frame != NULL)
            src->cb.frame(src->cb.ctx, worker, DLT_EN10MB, pkt, caplen, ts);
        if (h->tp_next_offset == 0)
            break;
        off += h->tp_next_offset;
    }
    atomic_fetch_add(&src->frames, frames);
    atomic_fetch_add(&src->bytes, bytes);
}

static void *afp_thread(void *arg)
{
    struct src_worker *w = arg;
    struct sen_source *src = w->src;
    struct afp_state *s = src->kind_state;
    struct afp_ring *r = &s->rings[w->id];
    int64_t next_tick = sen_src_wall_us() + 1000000;
    while (!atomic_load(&src->stop)) {
        struct tpacket_block_desc *bd =
            (struct tpacket_block_desc *)(r->map + (size_t)r->next * BLOCK_SIZE);
        if (__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) {
            afp_block(src, s, w->id, r, bd);
            __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            r->next = (r->next + 1) % r->nblocks;
        } else {
            struct pollfd pf[2] = {{r->fd, POLLIN | POLLERR, 0}, {src->wake[0], POLLIN, 0}};
            int rc = poll(pf, 2, POLL_MS);
            if (rc < 0 && errno != EINTR) {
                sen_src_fail(src, KH_EIO, "%s: poll: %s", src->path, strerror(errno));
                break;
            }
            if (pf[0].revents & POLLERR) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr == ENETDOWN || soerr == ENODEV) {
                    sen_src_fail(src, KH_EIO, "%s: %s", src->path, strerror(soerr));
                    break;
                }
            }
        }
        int64_t now = sen_src_wall_us();
        if (now >= next_tick) {
            next_tick = now + 1000000;
            afp_drops(src, r);
            if (src->cb.tick != NULL)
                src->cb.tick(src->cb.ctx, w->id, now);
        }
    }
    afp_drops(src, r);
    return NULL;
}
