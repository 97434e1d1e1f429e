/* tickpath wire format, written from the README's tables (not generated).
 *
 * Every value is little-endian; these helpers read and write bytes explicitly,
 * so the examples also work on a big-endian host. */
#ifndef TICKPATH_EXAMPLE_H
#define TICKPATH_EXAMPLE_H

#include <stdint.h>
#include <string.h>

#define TKP_MAGIC 0x54504B54u /* the bytes "TKPT" */
#define TKP_VERSION 1
#define TKP_HEADER_SIZE 32
#define TKP_PRICE_SCALE 10000
#define TKP_SIZE_SCALE 100000000LL

enum {
    KIND_TRADE = 1, KIND_QUOTE = 2, KIND_ORDER = 3,
    KIND_RESULT_QUOTE = 16, KIND_RESULT_TRADE = 17, KIND_RESULT_BAR = 18,
    KIND_RESULT_BOOK = 19, KIND_RESULT_CHAIN = 20, KIND_RESULT_FPGA = 21,
    KIND_RESULT_CORR = 22
};

/* record sizes, README */
#define TRADE_SIZE 40
#define QUOTE_SIZE 48
#define ORDER_SIZE 40
#define RESULT_QUOTE_SIZE 112
#define RESULT_TRADE_SIZE 152
#define RESULT_BAR_SIZE 104
#define RESULT_BOOK_SIZE 264
#define RESULT_CHAIN_SIZE 176
#define RESULT_FPGA_SIZE 168
#define RESULT_CORR_SIZE 80

static inline uint64_t rd_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline int64_t rd_i64(const uint8_t *p) { return (int64_t)rd_u64(p); }
static inline uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint8_t rd_u8(const uint8_t *p) { return p[0]; }
static inline double rd_f64(const uint8_t *p) {
    uint64_t bits = rd_u64(p);
    double d;
    memcpy(&d, &bits, sizeof d); /* IEEE 754 binary64 */
    return d;
}

static inline void wr_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void wr_i64(uint8_t *p, int64_t v) { wr_u64(p, (uint64_t)v); }
static inline void wr_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void wr_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

/* HEADER (32 bytes): magic u32 @0, version u16 @4, kind u16 @6, stream_id u32 @8,
 * count u32 @12, seq u64 @16, send_ns i64 @24 */
static inline void wr_header(uint8_t *p, uint16_t kind, uint32_t stream, uint32_t count,
                             uint64_t seq, int64_t send_ns) {
    wr_u32(p + 0, TKP_MAGIC);
    wr_u16(p + 4, TKP_VERSION);
    wr_u16(p + 6, kind);
    wr_u32(p + 8, stream);
    wr_u32(p + 12, count);
    wr_u64(p + 16, seq);
    wr_i64(p + 24, send_ns);
}

#endif
