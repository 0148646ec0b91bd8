/*
 * Executable layout: the bounds-checked PE and ELF parsers fill one
 * struct khx_exe, which the scanner uses to resolve EP/section offsets,
 * compute section and import-table hashes, and match VersionInfo strings.
 * Every field is derived from untrusted bytes and checked against the buffer
 * length before use; a malformed header gives KH_EFORMAT and never reads
 * outside the buffer.
 */
#ifndef KHX_EXE_H
#define KHX_EXE_H

#include <stddef.h>
#include <stdint.h>

enum khx_exe_type {
    KHX_EXE_NONE = 0,
    KHX_EXE_PE32,
    KHX_EXE_PE32PLUS,
    KHX_EXE_ELF32,
    KHX_EXE_ELF64,
};

struct khx_section {
    uint64_t rva;      /* virtual address (PE: RVA; ELF: sh_addr or p_vaddr) */
    uint64_t vsize;    /* virtual size */
    uint64_t raw_off;  /* file offset of the section's data */
    uint64_t raw_size; /* bytes of data in the file, clamped to the buffer */
    char name[9];      /* NUL-terminated; PE names are at most 8 bytes */
};

/* A VersionInfo String entry, as ClamAV's "VI" offset anchor matches it: the
 * UTF-16LE key, its terminating 0x0000, padding, then the UTF-16LE value and
 * its terminator, exactly as stored in the resource. */
struct khx_verinfo {
    size_t off; /* file offset of the entry's key */
    size_t len; /* bytes from the key to the end of the value's terminator */
};

struct khx_exe {
    int type;     /* enum khx_exe_type */
    int ep_valid; /* 1 if `ep` maps into the file */
    uint64_t ep;  /* entry point as a file offset */
    uint32_t nsections;
    struct khx_section *sections; /* malloc'd, nsections entries */
    /* PE only: the import hash string ClamAV's .imp signatures are computed
     * over: "dll.func" pairs, lowercase, comma-separated, dll extension
     * (.dll .ocx .sys) removed, ordinal imports named "ordNNN" (as pefile). */
    char *imphash_str; /* malloc'd, NUL-terminated, or NULL if no imports */
    size_t imphash_len;
    uint32_t nverinfo;
    struct khx_verinfo *verinfo; /* malloc'd, VersionInfo String entries */
};

/* Parses a PE (MZ + PE\0\0) image. Returns 0, KH_EFORMAT if it is not a
 * well-formed PE (out->type stays KHX_EXE_NONE), or KH_ENOMEM. A PE whose
 * optional parts (imports, resources) are damaged still parses: those parts
 * are left empty. */
int khx_pe_parse(const uint8_t *buf, size_t len, struct khx_exe *out);

/* Parses an ELF32/ELF64 image (either byte order). ELF sections are the
 * program headers of type PT_LOAD when section headers are absent. */
int khx_elf_parse(const uint8_t *buf, size_t len, struct khx_exe *out);

/* Frees what the parsers allocated and zeroes the struct. NULL-safe. */
void khx_exe_clear(struct khx_exe *exe);

#endif
