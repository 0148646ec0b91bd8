/*
 * PE (Portable Executable) layout parser: fills struct khx_exe from the bytes
 * of a PE32 or PE32+ image so that the scanner can resolve EP- and
 * section-relative offsets, hash sections (.mdb/.msb), compute the import
 * hash string (.imp) and anchor "VI" signatures on VersionInfo strings.
 *
 * The rules follow what ClamAV's PE header parser does, because the
 * signatures we load were written against it: section offsets and sizes are
 * rounded to the file and section alignment, an RVA below the (aligned)
 * SizeOfHeaders maps to the same file offset, the import hash string is built
 * with ClamAV's name rules and ordinal tables, and VersionInfo strings are
 * found by the same walk of the resource tree. Every read is checked against
 * the buffer length first; the code never trusts a size, count or offset it
 * read from the file. The helpers are written from the format description,
 * not copied from any other project.
 */
#include "exe.h"
#include "khx.h"

#include <stdlib.h>
#include <string.h>

/* The Windows XP loader refuses images with more than 96 sections; later
 * loaders allow more, so we parse the first 96 and ignore the rest rather
 * than rejecting the file. */
#define PE_MAX_SECTIONS 96
/* Longest DLL or function name read from the import table (ClamAV's limit). */
#define PE_MAX_NAME 256
/* Import descriptors walked at most (ClamAV's limit). */
#define PE_MAX_DESCRIPTORS 1024
/* Largest import hash string we build; a longer one is given up. */
#define PE_MAX_IMPHASH (4u << 20)
/* Import thunks walked in total. Entries that add nothing to the string
 * (names that cannot be read) are not bounded by PE_MAX_IMPHASH, so this
 * bounds the time instead; real programs import a few thousand functions. */
#define PE_MAX_THUNKS (1u << 20)
/* Resource directory entries visited in total while looking for RT_VERSION,
 * so that directories that point at each other cannot make us loop for long. */
#define PE_MAX_RES_ENTRIES 65536
/* RT_VERSION data entries looked at (ClamAV's limit). */
#define PE_MAX_VERSION_RES 16
/* VersionInfo String entries recorded at most. */
#define PE_MAX_VERINFO 4096

#define PE_RT_VERSION   16
#define PE_DIR_IMPORT   1
#define PE_DIR_RESOURCE 2

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* Returns 1 when [off, off + n) lies inside a buffer of `len` bytes. */
static int in_buf(size_t len, uint64_t off, uint64_t n)
{
    return off <= len && n <= len - off;
}

/* Rounds down / up to a multiple of `a`; an alignment of 0 leaves the value
 * as it is, exactly as the PE loaders we mimic do. */
static uint64_t align_down(uint64_t v, uint64_t a)
{
    return a ? v / a * a : v;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return a ? (v / a + (v % a != 0)) * a : v;
}

struct pe_ctx {
    const uint8_t *buf;
    size_t len;
    int plus; /* PE32+ */
    uint64_t hdr_size;
    uint32_t ndirs;
    uint32_t dir_rva[16];
    uint32_t dir_size[16];
    struct khx_section *sec;
    uint32_t nsec;
};

/* Maps an RVA to a file offset. An RVA below the aligned header size is the
 * same offset in the file; otherwise the last section whose raw data covers
 * it wins. Returns 0 and sets *off, or -1 when the RVA is not in the file. */
static int pe_rawaddr(const struct pe_ctx *pe, uint64_t rva, uint64_t *off)
{
    if (rva < pe->hdr_size) {
        if (rva >= pe->len)
            return -1;
        *off = rva;
        return 0;
    }
    for (uint32_t i = pe->nsec; i-- > 0;) {
        const struct khx_section *s = &pe->sec[i];
        if (s->raw_size && s->rva <= rva && rva - s->rva < s->raw_size) {
            *off = s->raw_off + (rva - s->rva);
            return 0;
        }
    }
    return -1;
}

/* ---- Import hash ------------------------------------------------------- */

/* Names of the functions that ws2_32.dll/wsock32.dll and oleaut32.dll export
 * by ordinal only. An import by ordinal from those DLLs is hashed under the
 * function's name (as ClamAV and pefile do), any other as "ord<N>". */
static const char *const ws2_32_names[117] = {
    [1] = "accept",
    [2] = "bind",
    [3] = "closesocket",
    [4] = "connect",
    [5] = "getpeername",
    [6] = "getsockname",
    [7] = "getsockopt",
    [8] = "htonl",
    [9] = "htons",
    [10] = "ioctlsocket",
    [11] = "inet_addr",
    [12] = "inet_ntoa",
    [13] = "listen",
    [14] = "ntohl",
    [15] = "ntohs",
    [16] = "recv",
    [17] = "recvfrom",
    [18] = "select",
    [19] = "send",
    [20] = "sendto",
    [21] = "setsockopt",
    [22] = "shutdown",
    [23] = "socket",
    [24] = "GetAddrInfoW",
    [25] = "GetNameInfoW",
    [26] = "WSApSetPostRoutine",
    [27] = "FreeAddrInfoW",
    [28] = "WPUCompleteOverlappedRequest",
    [29] = "WSAAccept",
    [30] = "WSAAddressToStringA",
    [31] = "WSAAddressToStringW",
    [32] = "WSACloseEvent",
    [33] = "WSAConnect",
    [34] = "WSACreateEvent",
    [35] = "WSADuplicateSocketA",
    [36] = "WSADuplicateSocketW",
    [37] = "WSAEnumNameSpaceProvidersA",
    [38] = "WSAEnumNameSpaceProvidersW",
    [39] = "WSAEnumNetworkEvents",
    [40] = "WSAEnumProtocolsA",
    [41] = "WSAEnumProtocolsW",
    [42] = "WSAEventSelect",
    [43] = "WSAGetOverlappedResult",
    [44] = "WSAGetQOSByName",
    [45] = "WSAGetServiceClassInfoA",
    [46] = "WSAGetServiceClassInfoW",
    [47] = "WSAGetServiceClassNameByClassIdA",
    [48] = "WSAGetServiceClassNameByClassIdW",
    [49] = "WSAHtonl",
    [50] = "WSAHtons",
    [51] = "gethostbyaddr",
    [52] = "gethostbyname",
    [53] = "getprotobyname",
    [54] = "getprotobynumber",
    [55] = "getservbyname",
    [56] = "getservbyport",
    [57] = "gethostname",
    [58] = "WSAInstallServiceClassA",
    [59] = "WSAInstallServiceClassW",
    [60] = "WSAIoctl",
    [61] = "WSAJoinLeaf",
    [62] = "WSALookupServiceBeginA",
    [63] = "WSALookupServiceBeginW",
    [64] = "WSALookupServiceEnd",
    [65] = "WSALookupServiceNextA",
    [66] = "WSALookupServiceNextW",
    [67] = "WSANSPIoctl",
    [68] = "WSANtohl",
    [69] = "WSANtohs",
    [70] = "WSAProviderConfigChange",
    [71] = "WSARecv",
    [72] = "WSARecvDisconnect",
    [73] = "WSARecvFrom",
    [74] = "WSARemoveServiceClass",
    [75] = "WSAResetEvent",
    [76] = "WSASend",
    [77] = "WSASendDisconnect",
    [78] = "WSASendTo",
    [79] = "WSASetEvent",
    [80] = "WSASetServiceA",
    [81] = "WSASetServiceW",
    [82] = "WSASocketA",
    [83] = "WSASocketW",
    [84] = "WSAStringToAddressA",
    [85] = "WSAStringToAddressW",
    [86] = "WSAWaitForMultipleEvents",
    [87] = "WSCDeinstallProvider",
    [88] = "WSCEnableNSProvider",
    [89] = "WSCEnumProtocols",
    [90] = "WSCGetProviderPath",
    [91] = "WSCInstallNameSpace",
    [92] = "WSCInstallProvider",
    [93] = "WSCUnInstallNameSpace",
    [94] = "WSCUpdateProvider",
    [95] = "WSCWriteNameSpaceOrder",
    [96] = "WSCWriteProviderOrder",
    [97] = "freeaddrinfo",
    [98] = "getaddrinfo",
    [99] = "getnameinfo",
    [101] = "WSAAsyncSelect",
    [102] = "WSAAsyncGetHostByAddr",
    [103] = "WSAAsyncGetHostByName",
    [104] = "WSAAsyncGetProtoByNumber",
    [105] = "WSAAsyncGetProtoByName",
    [106] = "WSAAsyncGetServByPort",
    [107] = "WSAAsyncGetServByName",
    [108] = "WSACancelAsyncRequest",
    [109] = "WSASetBlockingHook",
    [110] = "WSAUnhookBlockingHook",
    [111] = "WSAGetLastError",
    [112] = "WSASetLastError",
    [113] = "WSACancelBlockingCall",
    [114] = "WSAIsBlocking",
    [115] = "WSAStartup",
    [116] = "WSACleanup",
};

static const char *const oleaut32_names[444] = {
    [2] = "SysAllocString",
    [3] = "SysReAllocString",
    [4] = "SysAllocStringLen",
    [5] = "SysReAllocStringLen",
    [6] = "SysFreeString",
    [7] = "SysStringLen",
    [8] = "VariantInit",
    [9] = "VariantClear",
    [10] = "VariantCopy",
    [11] = "VariantCopyInd",
    [12] = "VariantChangeType",
    [13] = "VariantTimeToDosDateTime",
    [14] = "DosDateTimeToVariantTime",
    [15] = "SafeArrayCreate",
    [16] = "SafeArrayDestroy",
    [17] = "SafeArrayGetDim",
    [18] = "SafeArrayGetElemsize",
    [19] = "SafeArrayGetUBound",
    [20] = "SafeArrayGetLBound",
    [21] = "SafeArrayLock",
    [22] = "SafeArrayUnlock",
    [23] = "SafeArrayAccessData",
    [24] = "SafeArrayUnaccessData",
    [25] = "SafeArrayGetElement",
    [26] = "SafeArrayPutElement",
    [27] = "SafeArrayCopy",
    [28] = "DispGetParam",
    [29] = "DispGetIDsOfNames",
    [30] = "DispInvoke",
    [31] = "CreateDispTypeInfo",
    [32] = "CreateStdDispatch",
    [33] = "RegisterActiveObject",
    [34] = "RevokeActiveObject",
    [35] = "GetActiveObject",
    [36] = "SafeArrayAllocDescriptor",
    [37] = "SafeArrayAllocData",
    [38] = "SafeArrayDestroyDescriptor",
    [39] = "SafeArrayDestroyData",
    [40] = "SafeArrayRedim",
    [41] = "SafeArrayAllocDescriptorEx",
    [42] = "SafeArrayCreateEx",
    [43] = "SafeArrayCreateVectorEx",
    [44] = "SafeArraySetRecordInfo",
    [45] = "SafeArrayGetRecordInfo",
    [46] = "VarParseNumFromStr",
    [47] = "VarNumFromParseNum",
    [48] = "VarI2FromUI1",
    [49] = "VarI2FromI4",
    [50] = "VarI2FromR4",
    [51] = "VarI2FromR8",
    [52] = "VarI2FromCy",
    [53] = "VarI2FromDate",
    [54] = "VarI2FromStr",
    [55] = "VarI2FromDisp",
    [56] = "VarI2FromBool",
    [57] = "SafeArraySetIID",
    [58] = "VarI4FromUI1",
    [59] = "VarI4FromI2",
    [60] = "VarI4FromR4",
    [61] = "VarI4FromR8",
    [62] = "VarI4FromCy",
    [63] = "VarI4FromDate",
    [64] = "VarI4FromStr",
    [65] = "VarI4FromDisp",
    [66] = "VarI4FromBool",
    [67] = "SafeArrayGetIID",
    [68] = "VarR4FromUI1",
    [69] = "VarR4FromI2",
    [70] = "VarR4FromI4",
    [71] = "VarR4FromR8",
    [72] = "VarR4FromCy",
    [73] = "VarR4FromDate",
    [74] = "VarR4FromStr",
    [75] = "VarR4FromDisp",
    [76] = "VarR4FromBool",
    [77] = "SafeArrayGetVartype",
    [78] = "VarR8FromUI1",
    [79] = "VarR8FromI2",
    [80] = "VarR8FromI4",
    [81] = "VarR8FromR4",
    [82] = "VarR8FromCy",
    [83] = "VarR8FromDate",
    [84] = "VarR8FromStr",
    [85] = "VarR8FromDisp",
    [86] = "VarR8FromBool",
    [87] = "VarFormat",
    [88] = "VarDateFromUI1",
    [89] = "VarDateFromI2",
    [90] = "VarDateFromI4",
    [91] = "VarDateFromR4",
    [92] = "VarDateFromR8",
    [93] = "VarDateFromCy",
    [94] = "VarDateFromStr",
    [95] = "VarDateFromDisp",
    [96] = "VarDateFromBool",
    [97] = "VarFormatDateTime",
    [98] = "VarCyFromUI1",
    [99] = "VarCyFromI2",
    [100] = "VarCyFromI4",
    [101] = "VarCyFromR4",
    [102] = "VarCyFromR8",
    [103] = "VarCyFromDate",
    [104] = "VarCyFromStr",
    [105] = "VarCyFromDisp",
    [106] = "VarCyFromBool",
    [107] = "VarFormatNumber",
    [108] = "VarBstrFromUI1",
    [109] = "VarBstrFromI2",
    [110] = "VarBstrFromI4",
    [111] = "VarBstrFromR4",
    [112] = "VarBstrFromR8",
    [113] = "VarBstrFromCy",
    [114] = "VarBstrFromDate",
    [115] = "VarBstrFromDisp",
    [116] = "VarBstrFromBool",
    [117] = "VarFormatPercent",
    [118] = "VarBoolFromUI1",
    [119] = "VarBoolFromI2",
    [120] = "VarBoolFromI4",
    [121] = "VarBoolFromR4",
    [122] = "VarBoolFromR8",
    [123] = "VarBoolFromDate",
    [124] = "VarBoolFromCy",
    [125] = "VarBoolFromStr",
    [126] = "VarBoolFromDisp",
    [127] = "VarFormatCurrency",
    [128] = "VarWeekdayName",
    [129] = "VarMonthName",
    [130] = "VarUI1FromI2",
    [131] = "VarUI1FromI4",
    [132] = "VarUI1FromR4",
    [133] = "VarUI1FromR8",
    [134] = "VarUI1FromCy",
    [135] = "VarUI1FromDate",
    [136] = "VarUI1FromStr",
    [137] = "VarUI1FromDisp",
    [138] = "VarUI1FromBool",
    [139] = "VarFormatFromTokens",
    [140] = "VarTokenizeFormatString",
    [141] = "VarAdd",
    [142] = "VarAnd",
    [143] = "VarDiv",
    [144] = "DllCanUnloadNow",
    [145] = "DllGetClassObject",
    [146] = "DispCallFunc",
    [147] = "VariantChangeTypeEx",
    [148] = "SafeArrayPtrOfIndex",
    [149] = "SysStringByteLen",
    [150] = "SysAllocStringByteLen",
    [151] = "DllRegisterServer",
    [152] = "VarEqv",
    [153] = "VarIdiv",
    [154] = "VarImp",
    [155] = "VarMod",
    [156] = "VarMul",
    [157] = "VarOr",
    [158] = "VarPow",
    [159] = "VarSub",
    [160] = "CreateTypeLib",
    [161] = "LoadTypeLib",
    [162] = "LoadRegTypeLib",
    [163] = "RegisterTypeLib",
    [164] = "QueryPathOfRegTypeLib",
    [165] = "LHashValOfNameSys",
    [166] = "LHashValOfNameSysA",
    [167] = "VarXor",
    [168] = "VarAbs",
    [169] = "VarFix",
    [170] = "OaBuildVersion",
    [171] = "ClearCustData",
    [172] = "VarInt",
    [173] = "VarNeg",
    [174] = "VarNot",
    [175] = "VarRound",
    [176] = "VarCmp",
    [177] = "VarDecAdd",
    [178] = "VarDecDiv",
    [179] = "VarDecMul",
    [180] = "CreateTypeLib2",
    [181] = "VarDecSub",
    [182] = "VarDecAbs",
    [183] = "LoadTypeLibEx",
    [184] = "SystemTimeToVariantTime",
    [185] = "VariantTimeToSystemTime",
    [186] = "UnRegisterTypeLib",
    [187] = "VarDecFix",
    [188] = "VarDecInt",
    [189] = "VarDecNeg",
    [190] = "VarDecFromUI1",
    [191] = "VarDecFromI2",
    [192] = "VarDecFromI4",
    [193] = "VarDecFromR4",
    [194] = "VarDecFromR8",
    [195] = "VarDecFromDate",
    [196] = "VarDecFromCy",
    [197] = "VarDecFromStr",
    [198] = "VarDecFromDisp",
    [199] = "VarDecFromBool",
    [200] = "GetErrorInfo",
    [201] = "SetErrorInfo",
    [202] = "CreateErrorInfo",
    [203] = "VarDecRound",
    [204] = "VarDecCmp",
    [205] = "VarI2FromI1",
    [206] = "VarI2FromUI2",
    [207] = "VarI2FromUI4",
    [208] = "VarI2FromDec",
    [209] = "VarI4FromI1",
    [210] = "VarI4FromUI2",
    [211] = "VarI4FromUI4",
    [212] = "VarI4FromDec",
    [213] = "VarR4FromI1",
    [214] = "VarR4FromUI2",
    [215] = "VarR4FromUI4",
    [216] = "VarR4FromDec",
    [217] = "VarR8FromI1",
    [218] = "VarR8FromUI2",
    [219] = "VarR8FromUI4",
    [220] = "VarR8FromDec",
    [221] = "VarDateFromI1",
    [222] = "VarDateFromUI2",
    [223] = "VarDateFromUI4",
    [224] = "VarDateFromDec",
    [225] = "VarCyFromI1",
    [226] = "VarCyFromUI2",
    [227] = "VarCyFromUI4",
    [228] = "VarCyFromDec",
    [229] = "VarBstrFromI1",
    [230] = "VarBstrFromUI2",
    [231] = "VarBstrFromUI4",
    [232] = "VarBstrFromDec",
    [233] = "VarBoolFromI1",
    [234] = "VarBoolFromUI2",
    [235] = "VarBoolFromUI4",
    [236] = "VarBoolFromDec",
    [237] = "VarUI1FromI1",
    [238] = "VarUI1FromUI2",
    [239] = "VarUI1FromUI4",
    [240] = "VarUI1FromDec",
    [241] = "VarDecFromI1",
    [242] = "VarDecFromUI2",
    [243] = "VarDecFromUI4",
    [244] = "VarI1FromUI1",
    [245] = "VarI1FromI2",
    [246] = "VarI1FromI4",
    [247] = "VarI1FromR4",
    [248] = "VarI1FromR8",
    [249] = "VarI1FromDate",
    [250] = "VarI1FromCy",
    [251] = "VarI1FromStr",
    [252] = "VarI1FromDisp",
    [253] = "VarI1FromBool",
    [254] = "VarI1FromUI2",
    [255] = "VarI1FromUI4",
    [256] = "VarI1FromDec",
    [257] = "VarUI2FromUI1",
    [258] = "VarUI2FromI2",
    [259] = "VarUI2FromI4",
    [260] = "VarUI2FromR4",
    [261] = "VarUI2FromR8",
    [262] = "VarUI2FromDate",
    [263] = "VarUI2FromCy",
    [264] = "VarUI2FromStr",
    [265] = "VarUI2FromDisp",
    [266] = "VarUI2FromBool",
    [267] = "VarUI2FromI1",
    [268] = "VarUI2FromUI4",
    [269] = "VarUI2FromDec",
    [270] = "VarUI4FromUI1",
    [271] = "VarUI4FromI2",
    [272] = "VarUI4FromI4",
    [273] = "VarUI4FromR4",
    [274] = "VarUI4FromR8",
    [275] = "VarUI4FromDate",
    [276] = "VarUI4FromCy",
    [277] = "VarUI4FromStr",
    [278] = "VarUI4FromDisp",
    [279] = "VarUI4FromBool",
    [280] = "VarUI4FromI1",
    [281] = "VarUI4FromUI2",
    [282] = "VarUI4FromDec",
    [283] = "BSTR_UserSize",
    [284] = "BSTR_UserMarshal",
    [285] = "BSTR_UserUnmarshal",
    [286] = "BSTR_UserFree",
    [287] = "VARIANT_UserSize",
    [288] = "VARIANT_UserMarshal",
    [289] = "VARIANT_UserUnmarshal",
    [290] = "VARIANT_UserFree",
    [291] = "LPSAFEARRAY_UserSize",
    [292] = "LPSAFEARRAY_UserMarshal",
    [293] = "LPSAFEARRAY_UserUnmarshal",
    [294] = "LPSAFEARRAY_UserFree",
    [295] = "LPSAFEARRAY_Size",
    [296] = "LPSAFEARRAY_Marshal",
    [297] = "LPSAFEARRAY_Unmarshal",
    [298] = "VarDecCmpR8",
    [299] = "VarCyAdd",
    [300] = "DllUnregisterServer",
    [301] = "OACreateTypeLib2",
    [303] = "VarCyMul",
    [304] = "VarCyMulI4",
    [305] = "VarCySub",
    [306] = "VarCyAbs",
    [307] = "VarCyFix",
    [308] = "VarCyInt",
    [309] = "VarCyNeg",
    [310] = "VarCyRound",
    [311] = "VarCyCmp",
    [312] = "VarCyCmpR8",
    [313] = "VarBstrCat",
    [314] = "VarBstrCmp",
    [315] = "VarR8Pow",
    [316] = "VarR4CmpR8",
    [317] = "VarR8Round",
    [318] = "VarCat",
    [319] = "VarDateFromUdateEx",
    [322] = "GetRecordInfoFromGuids",
    [323] = "GetRecordInfoFromTypeInfo",
    [325] = "SetVarConversionLocaleSetting",
    [326] = "GetVarConversionLocaleSetting",
    [327] = "SetOaNoCache",
    [329] = "VarCyMulI8",
    [330] = "VarDateFromUdate",
    [331] = "VarUdateFromDate",
    [332] = "GetAltMonthNames",
    [333] = "VarI8FromUI1",
    [334] = "VarI8FromI2",
    [335] = "VarI8FromR4",
    [336] = "VarI8FromR8",
    [337] = "VarI8FromCy",
    [338] = "VarI8FromDate",
    [339] = "VarI8FromStr",
    [340] = "VarI8FromDisp",
    [341] = "VarI8FromBool",
    [342] = "VarI8FromI1",
    [343] = "VarI8FromUI2",
    [344] = "VarI8FromUI4",
    [345] = "VarI8FromDec",
    [346] = "VarI2FromI8",
    [347] = "VarI2FromUI8",
    [348] = "VarI4FromI8",
    [349] = "VarI4FromUI8",
    [360] = "VarR4FromI8",
    [361] = "VarR4FromUI8",
    [362] = "VarR8FromI8",
    [363] = "VarR8FromUI8",
    [364] = "VarDateFromI8",
    [365] = "VarDateFromUI8",
    [366] = "VarCyFromI8",
    [367] = "VarCyFromUI8",
    [368] = "VarBstrFromI8",
    [369] = "VarBstrFromUI8",
    [370] = "VarBoolFromI8",
    [371] = "VarBoolFromUI8",
    [372] = "VarUI1FromI8",
    [373] = "VarUI1FromUI8",
    [374] = "VarDecFromI8",
    [375] = "VarDecFromUI8",
    [376] = "VarI1FromI8",
    [377] = "VarI1FromUI8",
    [378] = "VarUI2FromI8",
    [379] = "VarUI2FromUI8",
    [401] = "OleLoadPictureEx",
    [402] = "OleLoadPictureFileEx",
    [411] = "SafeArrayCreateVector",
    [412] = "SafeArrayCopyData",
    [413] = "VectorFromBstr",
    [414] = "BstrFromVector",
    [415] = "OleIconToCursor",
    [416] = "OleCreatePropertyFrameIndirect",
    [417] = "OleCreatePropertyFrame",
    [418] = "OleLoadPicture",
    [419] = "OleCreatePictureIndirect",
    [420] = "OleCreateFontIndirect",
    [421] = "OleTranslateColor",
    [422] = "OleLoadPictureFile",
    [423] = "OleSavePictureFile",
    [424] = "OleLoadPicturePath",
    [425] = "VarUI4FromI8",
    [426] = "VarUI4FromUI8",
    [427] = "VarI8FromUI8",
    [428] = "VarUI8FromI8",
    [429] = "VarUI8FromUI1",
    [430] = "VarUI8FromI2",
    [431] = "VarUI8FromR4",
    [432] = "VarUI8FromR8",
    [433] = "VarUI8FromCy",
    [434] = "VarUI8FromDate",
    [435] = "VarUI8FromStr",
    [436] = "VarUI8FromDisp",
    [437] = "VarUI8FromBool",
    [438] = "VarUI8FromI1",
    [439] = "VarUI8FromUI2",
    [440] = "VarUI8FromUI4",
    [441] = "VarUI8FromDec",
    [442] = "RegisterTypeLibForUser",
    [443] = "UnRegisterTypeLibForUser",
};

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Case-insensitive test that `s` (NUL-terminated) starts with `prefix`. */
static int starts_with_nocase(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (*s == '\0' || lower((unsigned char)*s) != lower((unsigned char)*prefix))
            return 0;
    return 1;
}

/* Writes the name an ordinal import is hashed under into out[64]. The DLL
 * test is a case-insensitive prefix match on the full file name, as ClamAV
 * does it, so "WS2_32.dll" and "ws2_32.DLL" both qualify. */
static void ordinal_name(const char *dll, uint16_t ord, char out[64])
{
    const char *name = NULL;
    if (starts_with_nocase(dll, "ws2_32.dll") || starts_with_nocase(dll, "wsock32.dll")) {
        if (ord < KHX_ARRAY_LEN(ws2_32_names))
            name = ws2_32_names[ord];
        else if (ord == 151)
            name = "__WSAFDIsSet";
        else if (ord == 500)
            name = "WEP";
    } else if (starts_with_nocase(dll, "oleaut32.dll")) {
        if (ord < KHX_ARRAY_LEN(oleaut32_names))
            name = oleaut32_names[ord];
    }
    if (name != NULL) {
        size_t n = KHX_MIN(strlen(name), (size_t)63);
        memcpy(out, name, n);
        out[n] = '\0';
    } else {
        /* "ord" + at most five digits always fits. */
        char digits[6];
        size_t nd = 0;
        unsigned v = ord;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        memcpy(out, "ord", 3);
        for (size_t i = 0; i < nd; i++)
            out[3 + i] = digits[nd - 1 - i];
        out[3 + nd] = '\0';
    }
}

/* The import hash only accepts names made of letters, digits, '_' and '.';
 * anything else (a '-' in "api-ms-win-...", a C++ mangled name) makes ClamAV
 * give up on the whole table, and so do we, so that our hashes agree. */
static int valid_import_name(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* Copies the NUL-terminated name at file offset `off` (at most PE_MAX_NAME
 * bytes, stopping at the end of the buffer) into out[PE_MAX_NAME + 1]. */
static void read_name(const struct pe_ctx *pe, uint64_t off, char *out)
{
    size_t n = 0;
    size_t avail = off < pe->len ? KHX_MIN(pe->len - (size_t)off, (size_t)PE_MAX_NAME) : 0;
    while (n < avail && pe->buf[off + n] != '\0') {
        out[n] = (char)pe->buf[off + n];
        n++;
    }
    out[n] = '\0';
}

/* Length of the DLL part of the hash: the name up to its first '.', when what
 * follows that dot starts with "dll", "ocx" or "sys"; the whole name
 * otherwise. (ClamAV looks at the first dot, pefile at the last; the
 * signatures are ClamAV's.) */
static size_t dll_stem_len(const char *dll)
{
    const char *dot = strchr(dll, '.');
    if (dot != NULL && (starts_with_nocase(dot, ".dll") || starts_with_nocase(dot, ".ocx") ||
                        starts_with_nocase(dot, ".sys")))
        return (size_t)(dot - dll);
    return strlen(dll);
}

/* Result of one import step: 0 to go on, a negative kh_err to stop with that
 * error, or PE_IMP_GIVE_UP when the table is malformed and no hash is made. */
#define PE_IMP_GIVE_UP 1

static int imphash_add(struct khx_buf *b, const char *dll, const char *func)
{
    int r;
    if (!valid_import_name(func))
        return PE_IMP_GIVE_UP;
    size_t dlen = dll_stem_len(dll), flen = strlen(func);
    if (b->len > 0 && (r = khx_buf_append_u8(b, ',')) != 0)
        goto out;
    if ((r = khx_buf_reserve(b, dlen + 1 + flen)) != 0)
        goto out;
    for (size_t i = 0; i < dlen; i++)
        b->data[b->len++] = (uint8_t)lower((unsigned char)dll[i]);
    b->data[b->len++] = '.';
    for (size_t i = 0; i < flen; i++)
        b->data[b->len++] = (uint8_t)lower((unsigned char)func[i]);
out:
    /* An over-long table is not worth hashing: no signature could match it. */
    return r == KH_ELIMIT ? PE_IMP_GIVE_UP : r;
}

/* Hashes the functions one import descriptor names. */
static int imphash_dll(const struct pe_ctx *pe, struct khx_buf *b, const uint8_t *desc,
                       const char *dll, uint32_t *thunks_left)
{
    uint32_t oft = rd32(desc), ft = rd32(desc + 16);
    uint64_t thunk = 0;
    size_t tsize = pe->plus ? 8 : 4;
    int r;

    /* The lookup table (OriginalFirstThunk) is preferred; linkers that omit
     * it leave only the address table (FirstThunk), which holds the same
     * values in the file. */
    if (oft == 0 || pe_rawaddr(pe, oft, &thunk) != 0 || thunk == 0)
        if (pe_rawaddr(pe, ft, &thunk) != 0)
            return PE_IMP_GIVE_UP;

    /* The walk ends at the zero terminator or the end of the buffer; the
     * string limit in `b` bounds the work. */
    while (in_buf(pe->len, thunk, tsize)) {
        uint64_t v = pe->plus ? rd64(pe->buf + thunk) : rd32(pe->buf + thunk);
        int by_ordinal = pe->plus ? (v >> 63) != 0 : (v >> 31) != 0;
        char name[PE_MAX_NAME + 1];
        if (v == 0)
            break;
        if (*thunks_left == 0)
            return PE_IMP_GIVE_UP;
        (*thunks_left)--;
        thunk += tsize;
        if (by_ordinal) {
            char oname[64];
            ordinal_name(dll, (uint16_t)(v & 0xffff), oname);
            if ((r = imphash_add(b, dll, oname)) != 0)
                return r;
            continue;
        }
        /* Only the low 32 bits of a PE32+ thunk are an RVA. */
        uint64_t off = 0;
        if (pe_rawaddr(pe, (uint32_t)v, &off) != 0) {
            /* ClamAV skips such an entry in a PE32+ but, in a PE32, reads
             * the name as if the RVA had mapped to offset 0. */
            if (pe->plus)
                continue;
            off = 0;
        }
        /* The name follows a 2-byte hint. ClamAV only reads a name when the
         * PE_MAX_NAME bytes after the hint are all inside the file and
         * silently skips the entry otherwise; doing the same keeps the
         * hashes equal for names stored at the very end of a file. */
        if (!in_buf(pe->len, off, 2 + (uint64_t)PE_MAX_NAME))
            continue;
        read_name(pe, off + 2, name);
        if ((r = imphash_add(b, dll, name)) != 0)
            return r;
    }
    return 0;
}

/* Builds exe->imphash_str from the import directory. A damaged table leaves
 * it NULL; only an allocation failure is an error. */
static int pe_imports(const struct pe_ctx *pe, struct khx_exe *exe)
{
    struct khx_buf b;
    uint64_t off = 0;
    uint32_t thunks_left = PE_MAX_THUNKS;
    int r = 0;

    khx_buf_init(&b, PE_MAX_IMPHASH);
    if (pe->ndirs <= PE_DIR_IMPORT || pe->dir_rva[PE_DIR_IMPORT] == 0 ||
        pe->dir_size[PE_DIR_IMPORT] == 0)
        goto out;
    if (pe_rawaddr(pe, pe->dir_rva[PE_DIR_IMPORT], &off) != 0 ||
        !in_buf(pe->len, off, pe->dir_size[PE_DIR_IMPORT]))
        goto out;

    /* The last 20 bytes of the directory are the all-zero terminator and are
     * never read as a descriptor (hence "> 20"). */
    uint64_t left = pe->dir_size[PE_DIR_IMPORT];
    for (unsigned n = 0; left > 20 && n < PE_MAX_DESCRIPTORS; n++, left -= 20, off += 20) {
        const uint8_t *desc = pe->buf + off;
        uint32_t name_rva = rd32(desc + 12);
        uint64_t name_off = 0;
        char dll[PE_MAX_NAME + 1];
        if (name_rva == 0)
            break;
        if (pe_rawaddr(pe, name_rva, &name_off) != 0) {
            r = PE_IMP_GIVE_UP;
            goto out;
        }
        read_name(pe, name_off, dll);
        if (!valid_import_name(dll)) {
            r = PE_IMP_GIVE_UP;
            goto out;
        }
        if ((r = imphash_dll(pe, &b, desc, dll, &thunks_left)) != 0)
            goto out;
    }
    if (b.len > 0) {
        if ((r = khx_buf_append_u8(&b, '\0')) != 0)
            goto out;
        size_t n = 0;
        exe->imphash_str = (char *)khx_buf_steal(&b, &n);
        exe->imphash_len = n - 1;
    }
    r = 0;
out:
    khx_buf_free(&b);
    if (r == PE_IMP_GIVE_UP || r == KH_ELIMIT)
        r = 0;
    return r;
}

/* ---- VersionInfo ------------------------------------------------------- */

/* Finds the data entries of RT_VERSION resources: root directory -> ID entry
 * 16 -> every name -> every language -> data entry. Stores at most
 * PE_MAX_VERSION_RES data-entry RVAs in rvas[] and returns how many. Every
 * directory read is bounds-checked and the total number of entries visited
 * is capped, so a tree whose directories point at each other ends quickly. */
static unsigned find_version_resources(const struct pe_ctx *pe, uint32_t rvas[])
{
    uint32_t res_rva = pe->dir_rva[PE_DIR_RESOURCE];
    unsigned found = 0, budget = PE_MAX_RES_ENTRIES;
    uint64_t dir = 0;

    if (pe_rawaddr(pe, res_rva, &dir) != 0 || !in_buf(pe->len, dir, 16))
        return 0;
    /* Named entries come first; RT_VERSION is an ID entry, so skip them. */
    uint64_t ent = dir + 16 + 8 * (uint64_t)rd16(pe->buf + dir + 12);
    unsigned ntypes = rd16(pe->buf + dir + 14);
    for (unsigned t = 0; t < ntypes && budget > 0; t++, ent += 8, budget--) {
        if (!in_buf(pe->len, ent, 8))
            return found;
        uint32_t type = rd32(pe->buf + ent), toff = rd32(pe->buf + ent + 4);
        if (type != PE_RT_VERSION || !(toff >> 31))
            continue;
        uint64_t ndir = 0;
        if (pe_rawaddr(pe, (uint32_t)(res_rva + (toff & 0x7fffffff)), &ndir) != 0 ||
            !in_buf(pe->len, ndir, 16))
            return found;
        /* The count is a 16-bit sum of named and ID entries (wrapping, as in
         * the loader we follow). */
        uint16_t nnames = (uint16_t)(rd16(pe->buf + ndir + 12) + rd16(pe->buf + ndir + 14));
        uint64_t nent = ndir + 16;
        for (unsigned n = 0; n < nnames && budget > 0; n++, nent += 8, budget--) {
            if (!in_buf(pe->len, nent, 8))
                return found;
            uint32_t noff = rd32(pe->buf + nent + 4);
            if (!(noff >> 31))
                continue;
            uint64_t ldir = 0;
            if (pe_rawaddr(pe, (uint32_t)(res_rva + (noff & 0x7fffffff)), &ldir) != 0 ||
                !in_buf(pe->len, ldir, 16))
                return found;
            uint16_t nlangs = (uint16_t)(rd16(pe->buf + ldir + 12) + rd16(pe->buf + ldir + 14));
            uint64_t lent = ldir + 16;
            for (unsigned l = 0; l < nlangs && budget > 0; l++, lent += 8, budget--) {
                if (!in_buf(pe->len, lent, 8))
                    return found;
                uint32_t loff = rd32(pe->buf + lent + 4);
                if (loff >> 31)
                    continue; /* a subdirectory where a data entry belongs */
                rvas[found++] = res_rva + loff;
                if (found == PE_MAX_VERSION_RES)
                    return found;
            }
        }
        /* Only the first RT_VERSION type entry is looked at. */
        return found;
    }
    return found;
}

static const uint8_t key_vs_version_info[32] = "V\0S\0_\0V\0E\0R\0S\0I\0O\0N\0_\0I\0N\0F\0O\0\0";
static const uint8_t key_var_file_info[24] = "V\0a\0r\0F\0i\0l\0e\0I\0n\0f\0o\0\0";
static const uint8_t key_string_file_info[30] = "S\0t\0r\0i\0n\0g\0F\0i\0l\0e\0I\0n\0f\0o\0\0";

/* Size of the VS_VERSIONINFO header up to its children: header (6), key
 * "VS_VERSION_INFO" (32), padding (2), VS_FIXEDFILEINFO (52). */
#define VI_ROOT_HDR (6 + 32 + 2 + 52)
/* StringFileInfo header (6) + key (30); StringTable header (6) + key (16) +
 * padding (2). */
#define VI_SFI_HDR (6 + 30)
#define VI_ST_HDR  24

static int verinfo_add(struct khx_vec *v, size_t off, size_t len)
{
    /* A String reachable from two resources is recorded once. */
    for (size_t i = 0; i < v->len; i++)
        if (KHX_VEC_AT(v, struct khx_verinfo, i)->off == off)
            return 0;
    struct khx_verinfo *e = khx_vec_push(v);
    if (e == NULL)
        return v->len >= v->max ? 0 : KH_ENOMEM;
    e->off = off;
    e->len = len;
    return 0;
}

/* Walks one VS_VERSIONINFO blob at buf[p, p + size) (already checked to lie
 * inside the buffer) and records each String entry of each StringTable. The
 * structure is VS_VERSIONINFO -> [VarFileInfo] -> StringFileInfo ->
 * StringTable* -> String*. Every node starts with a 16-bit length; nodes are
 * 4-byte aligned. A malformed node ends the walk at that level, as in
 * ClamAV, so that we anchor VI signatures on the same strings. */
static int parse_version_blob(const struct pe_ctx *pe, uint64_t p, uint64_t size,
                              struct khx_vec *out)
{
    const uint8_t *b = pe->buf;
    int r;

    if (size <= 4)
        return 0;
    uint32_t vi_len = rd16(b + p), vi_vlen = rd16(b + p + 2);
    if (vi_len > size || vi_len <= VI_ROOT_HDR || vi_vlen != 52 ||
        memcmp(b + p + 6, key_vs_version_info, sizeof(key_vs_version_info)) != 0 ||
        rd32(b + p + 40) != 0xfeef04bd)
        return 0;
    p += VI_ROOT_HDR;
    uint32_t rem = vi_len - VI_ROOT_HDR;
    int got_var = 0;

    while (rem > 6) {
        uint32_t sfi_len = rd16(b + p);
        if (sfi_len > rem)
            return 0;
        /* VarFileInfo sometimes comes first; skip it once. */
        if (!got_var && sfi_len > 6 + sizeof(key_var_file_info) &&
            memcmp(b + p + 6, key_var_file_info, sizeof(key_var_file_info)) == 0) {
            p += sfi_len;
            rem -= sfi_len;
            got_var = 1;
            continue;
        }
        if (sfi_len <= VI_SFI_HDR ||
            memcmp(b + p + 6, key_string_file_info, sizeof(key_string_file_info)) != 0)
            return 0;
        p += VI_SFI_HDR;
        uint32_t sfi_rem = sfi_len - VI_SFI_HDR;

        while (sfi_rem > 6) {
            uint32_t st_len = rd16(b + p);
            if (st_len > sfi_rem || st_len <= VI_ST_HDR)
                return 0;
            uint64_t next = p + st_len;
            uint32_t next_rem = sfi_rem - st_len;
            uint64_t q = p + VI_ST_HDR;
            uint32_t st_rem = st_len - VI_ST_HDR;

            while (st_rem > 6) {
                /* Each String is padded to 4 bytes; the rounded length is
                 * what must fit in the table. */
                uint32_t s_len = (rd16(b + q) + 3u) & ~3u;
                if (s_len > st_rem || s_len <= 6 + 2 + 8)
                    return 0; /* a broken String ends the whole walk */
                /* Find the end of the UTF-16 key (its 0x0000 terminator). */
                uint32_t k = 6;
                for (; k + 1 < s_len; k += 2) {
                    if (b[q + k] == 0 && b[q + k + 1] == 0) {
                        k += 2;
                        break;
                    }
                }
                k = (k + 3u) & ~3u;
                /* Skip a String with no room for a value, or an empty one. */
                if (k < s_len && s_len - k > 2) {
                    if ((r = verinfo_add(out, (size_t)(q + 6), (size_t)(s_len - 6))) != 0)
                        return r;
                }
                q += s_len;
                st_rem -= s_len;
            }
            p = next;
            sfi_rem = next_rem;
        }
        return 0; /* only one StringFileInfo is looked at */
    }
    return 0;
}

/* Records the VersionInfo String entries of the image in exe->verinfo. */
static int pe_verinfo(const struct pe_ctx *pe, struct khx_exe *exe)
{
    uint32_t rvas[PE_MAX_VERSION_RES];
    struct khx_vec v;
    int r = 0;

    khx_vec_init(&v, sizeof(struct khx_verinfo), PE_MAX_VERINFO);
    if (pe->ndirs <= PE_DIR_RESOURCE || pe->dir_size[PE_DIR_RESOURCE] == 0)
        goto out;
    unsigned n = find_version_resources(pe, rvas);
    for (unsigned i = 0; i < n; i++) {
        uint64_t entry = 0, data = 0;
        /* A data entry is {data RVA, size, code page, reserved}. */
        if (pe_rawaddr(pe, rvas[i], &entry) != 0 || !in_buf(pe->len, entry, 16))
            continue;
        uint32_t data_rva = rd32(pe->buf + entry), data_size = rd32(pe->buf + entry + 4);
        if (pe_rawaddr(pe, data_rva, &data) != 0 || !in_buf(pe->len, data, data_size))
            continue;
        if ((r = parse_version_blob(pe, data, data_size, &v)) != 0)
            goto out;
    }
    if (v.len > 0) {
        exe->verinfo = v.items;
        exe->nverinfo = (uint32_t)v.len;
        v.items = NULL;
    }
out:
    khx_vec_free(&v);
    return r;
}

/* ---- Headers and sections ---------------------------------------------- */

/* Reads the section table: offsets and sizes are aligned the way the PE
 * loader (and ClamAV) align them, then clamped to the file. */
static int pe_sections(struct pe_ctx *pe, uint64_t table, uint32_t nsec, uint32_t salign,
                       uint32_t falign)
{
    const uint8_t *b = pe->buf;

    /* Some linkers place raw data on 512-byte boundaries while declaring a
     * larger FileAlignment; the loader then uses 512. */
    for (uint32_t i = 0; falign != 0x200 && i < nsec; i++) {
        const uint8_t *h = b + table + 40 * (uint64_t)i;
        uint32_t raw = rd32(h + 20), rawsize = rd32(h + 16);
        if (falign && rawsize && raw % falign && !(raw % 0x200))
            falign = 0x200;
    }

    pe->sec = calloc(nsec, sizeof(*pe->sec));
    if (pe->sec == NULL)
        return KH_ENOMEM;
    pe->nsec = nsec;

    for (uint32_t i = 0; i < nsec; i++) {
        const uint8_t *h = b + table + 40 * (uint64_t)i;
        struct khx_section *s = &pe->sec[i];
        uint32_t vsize = rd32(h + 8), va = rd32(h + 12), rawsize = rd32(h + 16), raw = rd32(h + 20);
        uint64_t clamped_rawsize = rawsize;

        size_t nl = 0;
        while (nl < 8 && h[nl] != '\0') {
            s->name[nl] = (char)h[nl];
            nl++;
        }
        s->name[nl] = '\0';

        s->rva = align_down(va, salign);
        s->vsize = align_up(vsize, salign);
        s->raw_off = align_down(raw, falign);
        s->raw_size = align_up(rawsize, falign);
        if (s->raw_size) {
            if (s->raw_off >= pe->len || raw >= pe->len) {
                /* Data wholly outside the file: keep the section (so that
                 * section numbers stay what the header says) but empty. */
                s->raw_size = 0;
                clamped_rawsize = 0;
            } else {
                if (s->raw_size > pe->len - s->raw_off)
                    s->raw_size = pe->len - s->raw_off;
                if (clamped_rawsize > pe->len - raw)
                    clamped_rawsize = pe->len - raw;
            }
        }
        if (s->vsize == 0 && s->raw_size)
            s->vsize = align_up(clamped_rawsize, salign);
        /* Values with the sign bit set are not loadable; ClamAV rejects the
         * file, so do we. */
        if ((va >> 31) || (vsize >> 31) || (s->raw_size && (raw >> 31)) || (clamped_rawsize >> 31))
            return KH_EFORMAT;
    }
    return 0;
}

int khx_pe_parse(const uint8_t *buf, size_t len, struct khx_exe *out)
{
    struct pe_ctx pe;
    int r = KH_EFORMAT;

    if (out == NULL)
        return KH_EINVAL;
    memset(out, 0, sizeof(*out));
    memset(&pe, 0, sizeof(pe));
    pe.buf = buf;
    pe.len = buf != NULL ? len : 0;

    /* DOS header: "MZ" (or the old "ZM") and e_lfanew at 0x3c. */
    if (pe.len < 64 || !((buf[0] == 'M' && buf[1] == 'Z') || (buf[0] == 'Z' && buf[1] == 'M')))
        goto out;
    uint32_t lfanew = rd32(buf + 0x3c);
    if (lfanew == 0 || !in_buf(pe.len, lfanew, 24) || memcmp(buf + lfanew, "PE\0\0", 4) != 0)
        goto out;

    /* COFF file header. */
    const uint8_t *coff = buf + lfanew + 4;
    uint32_t nsec = rd16(coff + 2);
    uint32_t opt_size = rd16(coff + 16);
    if (nsec == 0)
        goto out;
    if (nsec > PE_MAX_SECTIONS)
        nsec = PE_MAX_SECTIONS;

    /* Optional header: the fixed part is 96 bytes (PE32) or 112 (PE32+),
     * followed by NumberOfRvaAndSizes data directories. */
    uint64_t opt = (uint64_t)lfanew + 24;
    if (opt_size < 96 || !in_buf(pe.len, opt, 96))
        goto out;
    uint16_t magic = rd16(buf + opt);
    uint32_t fixed;
    if (magic == 0x10b) {
        fixed = 96;
    } else if (magic == 0x20b) {
        fixed = 112;
        pe.plus = 1;
        if (opt_size < fixed || !in_buf(pe.len, opt, fixed))
            goto out;
    } else {
        goto out;
    }
    uint32_t ep_rva = rd32(buf + opt + 16);
    uint32_t salign = rd32(buf + opt + 32);
    uint32_t falign = rd32(buf + opt + 36);
    uint32_t hdr_size = rd32(buf + opt + 60);
    uint32_t ndirs = rd32(buf + opt + fixed - 4);
    pe.ndirs = KHX_MIN(ndirs, 16u);
    if (opt_size < fixed + 8 * pe.ndirs || !in_buf(pe.len, opt + fixed, 8 * pe.ndirs))
        goto out;
    for (uint32_t i = 0; i < pe.ndirs; i++) {
        pe.dir_rva[i] = rd32(buf + opt + fixed + 8 * i);
        pe.dir_size[i] = rd32(buf + opt + fixed + 8 * i + 4);
    }
    /* The header region is mapped in whole pages. */
    pe.hdr_size = align_up(hdr_size, salign);

    uint64_t table = opt + opt_size;
    if (!in_buf(pe.len, table, 40 * (uint64_t)nsec))
        goto out;
    if ((r = pe_sections(&pe, table, nsec, salign, falign)) != 0)
        goto out;

    /* An EP that maps nowhere leaves ep_valid 0; the rest is still useful. */
    uint64_t ep = 0;
    if (pe_rawaddr(&pe, ep_rva, &ep) == 0) {
        out->ep = ep;
        out->ep_valid = 1;
    }

    if ((r = pe_imports(&pe, out)) != 0)
        goto out;
    if ((r = pe_verinfo(&pe, out)) != 0)
        goto out;

    out->type = pe.plus ? KHX_EXE_PE32PLUS : KHX_EXE_PE32;
    out->nsections = pe.nsec;
    out->sections = pe.sec;
    pe.sec = NULL;
    r = 0;
out:
    free(pe.sec);
    if (r != 0)
        khx_exe_clear(out);
    return r;
}

void khx_exe_clear(struct khx_exe *exe)
{
    if (exe == NULL)
        return;
    free(exe->sections);
    free(exe->imphash_str);
    free(exe->verinfo);
    memset(exe, 0, sizeof(*exe));
}
