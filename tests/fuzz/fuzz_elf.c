/*
 * libFuzzer target for the ELF layout parser (lib/engine/elf.c). It also
 * touches every range the parser reports (section data, the EP) so that a
 * range pointing outside the input is caught here.
 */
#include "exe.h"

#include <stddef.h>
#include <stdint.h>

static unsigned touch(const uint8_t *buf, size_t len, uint64_t off, uint64_t n)
{
    unsigned sum = 0;
    if (off > len || n > len - off)
        __builtin_trap();
    for (uint64_t i = 0; i < n; i++)
        sum += buf[off + i];
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct khx_exe exe;
    volatile unsigned sink = 0;

    if (khx_elf_parse(data, size, &exe) != 0)
        return 0;
    if (exe.type != KHX_EXE_ELF32 && exe.type != KHX_EXE_ELF64)
        __builtin_trap();
    for (uint32_t i = 0; i < exe.nsections; i++)
        if (exe.sections[i].raw_size)
            sink += touch(data, size, exe.sections[i].raw_off, exe.sections[i].raw_size);
    if (exe.ep_valid)
        sink += touch(data, size, exe.ep, 1);
    if (exe.imphash_str != NULL || exe.nverinfo != 0)
        __builtin_trap();
    (void)sink;
    khx_exe_clear(&exe);
    return 0;
}
