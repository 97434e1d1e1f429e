/* A tickpath publisher in C over libzmq: trades, quotes and L3 orders for 4 symbols.
 *
 *   publisher ENDPOINT N_RECORDS [STREAM_ID [RATE]]
 *
 * It connects an XPUB to the engine's ingest endpoint and waits until the
 * engine's subscription arrives before its first frame (README, "Joining"): a
 * PUB would silently lose what it sent before.  One record per frame; sequence
 * numbers count records from 0; RATE records per second (default: as fast as it
 * can).  Prints the number of records sent. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zmq.h>

#include "tickpath.h"

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ENDPOINT N_RECORDS [STREAM_ID]\n", argv[0]);
        return 2;
    }
    const char *endpoint = argv[1];
    long n = atol(argv[2]);
    uint32_t stream = argc > 3 ? (uint32_t)atol(argv[3]) : 1;
    double rate = argc > 4 ? atof(argv[4]) : 0.0;
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_XPUB);
    int hwm = 0, linger = 5000;
    zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(pub, endpoint) != 0) {
        fprintf(stderr, "publisher: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    /* wait for the engine's subscription: a message whose first byte is 1 */
    int timeout_ms = 120000;
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    for (;;) {
        uint8_t sub[256];
        int got = zmq_recv(pub, sub, sizeof sub, 0);
        if (got < 0) {
            fprintf(stderr, "publisher: no subscriber joined within 120 s\n");
            return 1;
        }
        if (got >= 1 && sub[0] == 1) break;
    }
    uint8_t frame[TKP_HEADER_SIZE + 48];
    int64_t oid = 0;
    uint64_t seq = 0;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (rate > 0) { /* open loop: record i is due at t0 + i / rate */
            int64_t wait = t0 + (int64_t)(i / rate * 1e9) - now_ns();
            if (wait > 0) {
                struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
                nanosleep(&ts, NULL);
            }
        }
        uint32_t sym = (uint32_t)(i % 4);
        int64_t base = (100 + 10 * sym) * TKP_PRICE_SCALE + (i / 4 % 50) * 25; /* ticks */
        int64_t ts = 1700000000000000000LL + i * 1000000LL;
        uint8_t *r = frame + TKP_HEADER_SIZE;
        size_t size;
        uint16_t kind;
        memset(frame, 0, sizeof frame);
        switch (i % 5) {
        case 0: /* TRADE: ts_ns i64 @0, symbol u32 @8, side i8 @12, flags u8 @13, _pad @14,
                   price i64 @16, size i64 @24, trade_id u64 @32 */
        case 3:
            kind = KIND_TRADE;
            size = TRADE_SIZE;
            wr_i64(r + 0, ts);
            wr_u32(r + 8, sym);
            r[12] = (uint8_t)(i % 2 ? -1 : 1);
            wr_i64(r + 16, base + (i % 7) * 5);
            wr_i64(r + 24, (1 + i % 9) * TKP_SIZE_SCALE / 4);
            wr_u64(r + 32, (uint64_t)i);
            break;
        case 1: /* QUOTE: ts_ns @0, symbol @8, _pad @12, bid_price @16, bid_size @24,
                   ask_price @32, ask_size @40; every 7th one-sided */
            kind = KIND_QUOTE;
            size = QUOTE_SIZE;
            wr_i64(r + 0, ts);
            wr_u32(r + 8, sym);
            if (i % 7 != 1) {
                wr_i64(r + 16, base - 50);
                wr_i64(r + 24, (2 + i % 5) * TKP_SIZE_SCALE);
            }
            wr_i64(r + 32, base + 50);
            wr_i64(r + 40, (3 + i % 4) * TKP_SIZE_SCALE);
            break;
        default: /* ORDER: ts_ns @0, symbol @8, action u8 @12, side i8 @13, _pad @14,
                    order_id u64 @16, price i64 @24, size i64 @32: add, or cancel an old one */
            kind = KIND_ORDER;
            size = ORDER_SIZE;
            wr_i64(r + 0, ts);
            wr_u32(r + 8, sym);
            if (i % 3 == 0 && oid > 8) {
                r[12] = 3; /* cancel */
                wr_u64(r + 16, (uint64_t)(oid - 8));
            } else {
                oid++;
                r[12] = 1; /* add */
                r[13] = (uint8_t)(oid % 2 ? 1 : -1);
                wr_u64(r + 16, (uint64_t)oid);
                wr_i64(r + 24, base + (oid % 2 ? -100 : 100) - (oid % 6) * 25 * (oid % 2 ? 1 : -1));
                wr_i64(r + 32, (1 + oid % 3) * TKP_SIZE_SCALE);
            }
            break;
        }
        wr_header(frame, kind, stream, 1, seq, now_ns());
        if (zmq_send(pub, frame, TKP_HEADER_SIZE + size, 0) < 0) {
            fprintf(stderr, "publisher: send: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        seq += 1;
    }
    printf("%llu\n", (unsigned long long)seq);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    return 0;
}
