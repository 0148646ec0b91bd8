/*
 * libFuzzer target for the ELF layout parser (lib/engine/elf.c). It also
 * touches every range the parser reports (section data, the EP) so that a
 * range pointing outside the input is caught here.
 */
#include "exe.h"
#include "fuzz_walk.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct khx_exe exe;
    volatile unsigned sink = 0;

    if (khx_elf_parse(data, size, &exe) != 0)
        return 0;
    if (exe.type != KHX_EXE_ELF32 && exe.type != KHX_EXE_ELF64)
        __builtin_trap();
    sink += fuzz_touch_exe(data, size, &exe);
    if (exe.imphash_str != NULL || exe.nverinfo != 0)
        __builtin_trap();
    (void)sink;
    khx_exe_clear(&exe);
    return 0;
}
