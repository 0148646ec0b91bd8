/*
 * ELF layout parser: fills struct khx_exe from an ELF32 or ELF64 image of
 * either byte order, so that the scanner can resolve EP- and section-relative
 * signature offsets in Linux (and other Unix) executables.
 *
 * The entry point is mapped to a file offset through the PT_LOAD program
 * headers. Sections come from the section header table (names from the
 * section-name string table, cut to 8 bytes); when an image has no section
 * headers, as stripped or hand-made binaries sometimes do, its PT_LOAD
 * segments stand in for sections. Every table is bounds-checked against the
 * buffer; a table that does not fit is ignored rather than trusted.
 */
#include "exe.h"
#include "khx.h"

#include <stdlib.h>
#include <string.h>

/* Section and program header counts are 16-bit in the ELF header, but the
 * extended numbering (count in section header 0) allows 32-bit counts; this
 * caps what we allocate. Every header must also fit in the file. */
#define ELF_MAX_SECTIONS 65536
#define ELF_MAX_SEGMENTS 65536

#define ELF_PT_LOAD    1
#define ELF_SHT_NOBITS 8
#define ELF_SHN_UNDEF  0
#define ELF_SHN_XINDEX 0xffff

struct elf_ctx {
    const uint8_t *buf;
    size_t len;
    int is64;
    int big; /* big-endian */
};

static uint16_t rd16(const struct elf_ctx *e, uint64_t off)
{
    const uint8_t *p = e->buf + off;
    return e->big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t rd32(const struct elf_ctx *e, uint64_t off)
{
    const uint8_t *p = e->buf + off;
    if (e->big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint64_t rd64(const struct elf_ctx *e, uint64_t off)
{
    uint64_t a = rd32(e, off), b = rd32(e, off + 4);
    return e->big ? (a << 32 | b) : (b << 32 | a);
}

/* Reads an address-sized field: 4 bytes in ELF32, 8 in ELF64. */
static uint64_t rdaddr(const struct elf_ctx *e, uint64_t off)
{
    return e->is64 ? rd64(e, off) : rd32(e, off);
}

static int in_buf(size_t len, uint64_t off, uint64_t n)
{
    return off <= len && n <= len - off;
}

/* One program header, decoded. */
struct elf_phdr {
    uint32_t type;
    uint64_t offset, vaddr, filesz, memsz;
};

static void read_phdr(const struct elf_ctx *e, uint64_t at, struct elf_phdr *ph)
{
    ph->type = rd32(e, at);
    if (e->is64) {
        ph->offset = rd64(e, at + 8);
        ph->vaddr = rd64(e, at + 16);
        ph->filesz = rd64(e, at + 32);
        ph->memsz = rd64(e, at + 40);
    } else {
        ph->offset = rd32(e, at + 4);
        ph->vaddr = rd32(e, at + 8);
        ph->filesz = rd32(e, at + 16);
        ph->memsz = rd32(e, at + 20);
    }
}

/* Bytes of data a header describes that are really in the file. */
static uint64_t clamp_to_file(size_t len, uint64_t off, uint64_t size)
{
    if (off >= len)
        return 0;
    return KHX_MIN(size, (uint64_t)len - off);
}

/* Copies at most 8 bytes of the NUL-terminated string at `off` into name[9]. */
static void read_section_name(const struct elf_ctx *e, uint64_t strtab, uint64_t strtab_size,
                              uint32_t idx, char name[9])
{
    size_t n = 0;
    if (idx < strtab_size) {
        uint64_t p = strtab + idx, end = strtab + strtab_size;
        while (n < 8 && p + n < end && e->buf[p + n] != '\0') {
            name[n] = (char)e->buf[p + n];
            n++;
        }
    }
    name[n] = '\0';
}

int khx_elf_parse(const uint8_t *buf, size_t len, struct khx_exe *out)
{
    struct elf_ctx e;
    struct khx_section *sec = NULL;
    uint32_t nsec = 0;
    int r = KH_EFORMAT;

    if (out == NULL)
        return KH_EINVAL;
    memset(out, 0, sizeof(*out));
    memset(&e, 0, sizeof(e));
    e.buf = buf;
    e.len = buf != NULL ? len : 0;

    /* e_ident: magic, class (1 = 32-bit, 2 = 64-bit), data (1 = LE, 2 = BE). */
    if (e.len < 16 || memcmp(buf, "\177ELF", 4) != 0)
        goto out;
    if (buf[4] != 1 && buf[4] != 2)
        goto out;
    if (buf[5] != 1 && buf[5] != 2)
        goto out;
    e.is64 = buf[4] == 2;
    e.big = buf[5] == 2;
    uint64_t ehsize = e.is64 ? 64 : 52;
    if (e.len < ehsize)
        goto out;

    /* Field offsets after e_entry differ by the address size. */
    uint64_t a = e.is64 ? 8 : 4;
    uint64_t entry = rdaddr(&e, 24);
    uint64_t phoff = rdaddr(&e, 24 + a);
    uint64_t shoff = rdaddr(&e, 24 + 2 * a);
    uint64_t tail = 24 + 3 * a + 4; /* e_ehsize follows e_flags */
    uint32_t phentsize = rd16(&e, tail + 2);
    uint32_t phnum = rd16(&e, tail + 4);
    uint32_t shentsize = rd16(&e, tail + 6);
    uint32_t shnum = rd16(&e, tail + 8);
    uint32_t shstrndx = rd16(&e, tail + 10);
    uint32_t ph_min = e.is64 ? 56 : 32, sh_min = e.is64 ? 64 : 40;

    /* Section header 0 holds the real counts when they overflow 16 bits. */
    int have_sh = shoff != 0 && shentsize >= sh_min && in_buf(e.len, shoff, sh_min);
    if (have_sh) {
        if (shnum == 0)
            shnum = (uint32_t)KHX_MIN(rdaddr(&e, shoff + (e.is64 ? 32 : 20)),
                                      (uint64_t)ELF_MAX_SECTIONS);
        if (shstrndx == ELF_SHN_XINDEX)
            shstrndx = rd32(&e, shoff + (e.is64 ? 40 : 24)); /* sh_link */
        if (phnum == 0xffff)
            phnum = rd32(&e, shoff + (e.is64 ? 44 : 28)); /* sh_info */
    }
    shnum = KHX_MIN(shnum, (uint32_t)ELF_MAX_SECTIONS);
    phnum = KHX_MIN(phnum, (uint32_t)ELF_MAX_SEGMENTS);
    /* A table that is not wholly inside the file is ignored. */
    if (have_sh && !in_buf(e.len, shoff, (uint64_t)shnum * shentsize))
        have_sh = 0;
    int have_ph = phoff != 0 && phnum > 0 && phentsize >= ph_min &&
                  in_buf(e.len, phoff, (uint64_t)phnum * phentsize);

    /* Entry point: the first PT_LOAD segment whose memory image holds it.
     * An address in the zero-filled tail of a segment maps past its file
     * data; such an EP only counts if it still lands inside the file. */
    if (have_ph) {
        for (uint32_t i = 0; i < phnum; i++) {
            struct elf_phdr ph;
            read_phdr(&e, phoff + (uint64_t)i * phentsize, &ph);
            if (ph.type != ELF_PT_LOAD || entry < ph.vaddr || entry - ph.vaddr >= ph.memsz)
                continue;
            uint64_t off = ph.offset + (entry - ph.vaddr);
            if (off >= ph.offset && off < e.len) {
                out->ep = off;
                out->ep_valid = 1;
            }
            break;
        }
    }

    if (have_sh && shnum > 0) {
        /* The section-name string table, if it is a usable section. */
        uint64_t strtab = 0, strtab_size = 0;
        if (shstrndx != ELF_SHN_UNDEF && shstrndx < shnum) {
            uint64_t h = shoff + (uint64_t)shstrndx * shentsize;
            uint64_t off = rdaddr(&e, h + (e.is64 ? 24 : 16));
            uint64_t size = rdaddr(&e, h + (e.is64 ? 32 : 20));
            if (rd32(&e, h + 4) != ELF_SHT_NOBITS) {
                strtab = off;
                strtab_size = clamp_to_file(e.len, off, size);
            }
        }
        sec = calloc(shnum, sizeof(*sec));
        if (sec == NULL) {
            r = KH_ENOMEM;
            goto out;
        }
        for (uint32_t i = 0; i < shnum; i++) {
            uint64_t h = shoff + (uint64_t)i * shentsize;
            struct khx_section *s = &sec[i];
            uint32_t name = rd32(&e, h), type = rd32(&e, h + 4);
            s->rva = rdaddr(&e, h + (e.is64 ? 16 : 12));
            s->raw_off = rdaddr(&e, h + (e.is64 ? 24 : 16));
            s->vsize = rdaddr(&e, h + (e.is64 ? 32 : 20));
            /* SHT_NOBITS (.bss) occupies memory but no file bytes. */
            s->raw_size = type == ELF_SHT_NOBITS ? 0 : clamp_to_file(e.len, s->raw_off, s->vsize);
            read_section_name(&e, strtab, strtab_size, name, s->name);
        }
        nsec = shnum;
    } else if (have_ph) {
        /* No section headers: the loadable segments are the sections. */
        uint32_t nload = 0;
        for (uint32_t i = 0; i < phnum; i++)
            if (rd32(&e, phoff + (uint64_t)i * phentsize) == ELF_PT_LOAD)
                nload++;
        if (nload > 0) {
            sec = calloc(nload, sizeof(*sec));
            if (sec == NULL) {
                r = KH_ENOMEM;
                goto out;
            }
            for (uint32_t i = 0; i < phnum; i++) {
                struct elf_phdr ph;
                read_phdr(&e, phoff + (uint64_t)i * phentsize, &ph);
                if (ph.type != ELF_PT_LOAD)
                    continue;
                struct khx_section *s = &sec[nsec++];
                s->rva = ph.vaddr;
                s->vsize = ph.memsz;
                s->raw_off = ph.offset;
                s->raw_size = clamp_to_file(e.len, ph.offset, ph.filesz);
            }
        }
    }

    out->type = e.is64 ? KHX_EXE_ELF64 : KHX_EXE_ELF32;
    out->nsections = nsec;
    out->sections = sec;
    sec = NULL;
    r = 0;
out:
    free(sec);
    if (r != 0)
        khx_exe_clear(out);
    return r;
}
