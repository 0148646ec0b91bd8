/*
 * Fuzz target: the scan entry point. An engine with every signature kind is
 * built once from generated sources; each input is scanned as a file with
 * allmatch and small limits, so type detection, the PE/ELF parsers, offset
 * resolution, matcher programs, logical expressions, PCRE, YARA, text
 * normalisation and container walking all see hostile bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <khien/khien.h>

static kh_scanner *scanner;

static void setup(void)
{
    static const char *const srcs[][2] = {
        {"a.hdb", "44d88612fea8a8f36de82e1278abb02f:*:Eicar.Any:73\n"},
        {"a.msb", "*:23db1dd3f77fae25610b6a32701313ae:Sect:73\n"},
        {"a.imp", "98c88d882f01a3f6ac1e5f7dfd761624:*:Imp\n"},
        {"a.ndb", "Body.Any:0:*:4d5a{-200}5045\nBody.Ep:1:EP+0,64:e8????????"
                  "(58|59)\n"
                  "Body.Sect:1:S0+0,100:2e74657874\nBody.Last:1:SL+0,8:0000??00\n"
                  "Body.Se:1:SE0:5589e5\nBody.Eof:0:EOF-8,8:504b0506\n"
                  "Body.Elf:6:EP+0,16:31ed\nBody.Ascii:7:*:3c736372697074\n"
                  "Body.Html:3:*:3c696672616d65\nBody.Alt:0:*:(4142|4344)!(00|ff)4546(B)\n"
                  "Body.Vi:1:VI:43006f006d00\n"},
        {"a.ldb", "Ldb.One;Engine:51-255,Target:0;(0|1)>2,2;4142::i;434445::w\n"
                  "Ldb.Pcre;Engine:81-255,Target:0;0&1;4d5a;0/PE\\x00\\x00/g\n"
                  "Ldb.Tdb;Engine:51-255,Target:1,FileSize:10-100000,NumberOfSections:1-20;0;"
                  "2e64617461\n"
                  "Ldb.Cont;Engine:51-255,Container:CL_TYPE_ZIP;0;504b\n"},
        {"a.yar",
         "rule R { strings: $a = \"MZ\" $b = { 50 45 00 00 } condition: $a at 0 and $b }\n"},
    };
    kh_builder *b = NULL;
    if (kh_builder_new(NULL, &b) != KH_OK)
        abort();
    for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++)
        kh_builder_add_mem(b, srcs[i][0], srcs[i][1], strlen(srcs[i][1]));
    void *img;
    size_t len;
    if (kh_builder_compile(b, &img, &len) != KH_OK)
        abort();
    kh_builder_free(b);
    kh_engine *e = NULL;
    if (kh_engine_open_image(img, len, &e, NULL, 0) != KH_OK)
        abort();
    struct kh_scan_opts o;
    kh_scan_opts_default(&o);
    o.allmatch = 1;
    o.limits.max_filesize = 1 << 20;
    o.limits.max_scansize = 4 << 20;
    o.limits.max_files = 64;
    o.limits.max_recursion = 4;
    o.limits.max_scantime_ms = 5000;
    if (kh_scanner_new(e, &o, &scanner) != KH_OK)
        abort();
    kh_engine_free(e); /* the scanner keeps its own reference */
}

static int on_hit(void *ud, const struct kh_detection *d)
{
    (void)d;
    ++*(unsigned *)ud;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (scanner == NULL)
        setup();
    unsigned hits = 0;
    kh_scan_mem(scanner, data, size, "fuzz.bin", on_hit, &hits, NULL);
    return 0;
}
