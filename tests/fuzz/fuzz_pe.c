/*
 * libFuzzer target for the PE layout parser (lib/engine/pe.c). Besides
 * looking for crashes and out-of-bounds reads inside the parser, it touches
 * every range the parser reports (section data, VersionInfo entries, the EP)
 * so that a range pointing outside the input is caught here rather than in
 * the scanner that would trust it.
 */
#include "exe.h"
#include "fuzz_walk.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct khx_exe exe;
    volatile unsigned sink = 0;

    if (khx_pe_parse(data, size, &exe) != 0)
        return 0;
    if (exe.type != KHX_EXE_PE32 && exe.type != KHX_EXE_PE32PLUS)
        __builtin_trap();
    sink += fuzz_touch_exe(data, size, &exe);
    for (uint32_t i = 0; i < exe.nverinfo; i++)
        sink += fuzz_touch_range(data, size, exe.verinfo[i].off, exe.verinfo[i].len);
    if (exe.imphash_str != NULL && strlen(exe.imphash_str) != exe.imphash_len)
        __builtin_trap();
    (void)sink;
    khx_exe_clear(&exe);
    return 0;
}
